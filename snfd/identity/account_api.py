"""The account API (Synnefo's ``/account/v1.0``): resources, quotas, the
commission protocol for services, user catalogs, feedback and the user's
default project.  Projects live under the same prefix
(``snfd.identity.projects_api``).

Mounted at the segment ``account``, so the routes start with ``/v1.0``.
Authentication happens in front (``snfd.web.auth.TokenAuth``); each
handler says who may call it: anyone (``/resources``), a user, or a
component (a service token).  A component's name is its ``clientkey``: it
sees and resolves only its own commissions.

Besides Synnefo's endpoints there is ``POST /v1.0/service/resources``
(component token, body ``{"resources": [...]}``) through which a service
registers its resource definitions at start, where Synnefo used the
``service-import`` command, and ``GET /v1.0/service/resources`` through which
it reads them back as they stand (with the defaults administrators set;
the compute API's quota defaults come from there).
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import attrs
from twisted.logger import Logger
from twisted.web.resource import IResource

from snfd import errors
from snfd.quota import Commission, Provision, Resource
from snfd.web.app import MAX_JSON_BODY, json_body, json_object, make_app, read_json
from snfd.web.auth import component_of, user_of

if TYPE_CHECKING:
    from snfd.identity.accounts import Accounts
    from snfd.identity.quotaholder import LocalQuotaHolder

log = Logger(namespace="snfd.identity")

PREFIX = "/v1.0"

# PostgreSQL's bigint: serials, quantities and limits live in such columns.
BIGINT_MAX = 2**63 - 1
# One commission may move a holding by at most this much, so that sums of
# provisions stay far inside bigint.
MAX_QUANTITY = 2**62

_ISSUE_KEYS = frozenset({"provisions", "force", "auto_accept", "name"})
_PROVISION_KEYS = frozenset({"holder", "source", "resource", "quantity"})
_RESOLVE_KEYS = frozenset({"accept", "reject"})
_RESOURCE_KEYS = frozenset({
    "name", "description", "desc", "unit", "service_type", "service_origin", "ui_visible",
    "api_visible", "allow_in_projects", "base_default", "project_default"})

Handler = Callable[..., Awaitable[bytes]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any, what: str, empty: bool = True) -> str:
    """``value`` if it is a string PostgreSQL can store, else a 400."""
    if not isinstance(value, str):
        raise errors.BadRequest(f"{what} must be a string.")
    if "\x00" in value:
        raise errors.BadRequest(f"{what} must not contain NUL characters.")
    if not empty and not value:
        raise errors.BadRequest(f"{what} must not be empty.")
    return value


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise errors.BadRequest(f'"{key}" must be a boolean.')
    return value


def _unknown(body: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise errors.BadRequest(f"{what} has unknown fields: {', '.join(extra)}.")


def _query(request: Any, name: str) -> str | None:
    """A query parameter (its first value), decoded; ``None`` when absent."""
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return _text(values[0].decode("utf-8"), f"The parameter {name}")
    except UnicodeDecodeError:
        raise errors.BadRequest(f"The parameter {name} is not UTF-8.") from None


def _comma_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part for part in (p.strip() for p in value.split(",")) if part]


def parse_provisions(value: Any) -> list[Provision]:
    """The ``provisions`` of a commission request; 400 when malformed."""
    if value is None:
        raise errors.BadRequest("Provisions are missing.")
    if not isinstance(value, list):
        raise errors.BadRequest("Provisions should be a list.")
    out: list[Provision] = []
    sums: dict[tuple[str, str, str], int] = {}
    for item in value:
        if not isinstance(item, dict) or set(item) != _PROVISION_KEYS:
            raise errors.BadRequest(
                f"Malformed provision {item!r}: it needs exactly holder, source,"
                " resource and quantity.")
        holder = _text(item["holder"], "A provision's holder", empty=False)
        source = item["source"]
        if source is not None:
            source = _text(source, "A provision's source", empty=False)
        resource = _text(item["resource"], "A provision's resource", empty=False)
        quantity = item["quantity"]
        if not _is_int(quantity):
            raise errors.BadRequest(f"Malformed provision {item!r}: quantity must be an integer.")
        if abs(quantity) > MAX_QUANTITY:
            raise errors.BadRequest(f"Malformed provision {item!r}: quantity out of range.")
        provision = Provision(holder, source, resource, quantity)
        sums[provision.key] = sums.get(provision.key, 0) + quantity
        if abs(sums[provision.key]) > MAX_QUANTITY:
            raise errors.BadRequest("The provisions of one holding add up out of range.")
        out.append(provision)
    return out


def _serials(body: dict[str, Any], key: str) -> list[int]:
    value = body.get(key, [])
    if value is None:
        value = []
    if not isinstance(value, list):
        raise errors.BadRequest('"accept" and "reject" should reference lists of serials.')
    if not all(_is_int(s) for s in value):
        raise errors.BadRequest("Serials should be integers.")
    return value


def parse_resource(item: Any) -> Resource:
    """One resource definition of ``POST /service/resources``; 400 when
    malformed."""
    if not isinstance(item, dict):
        raise errors.BadRequest("A resource definition must be a JSON object.")
    _unknown(item, _RESOURCE_KEYS, "A resource definition")
    for key in ("name", "service_type", "service_origin"):
        if key not in item:
            raise errors.BadRequest(f"A resource definition needs {key}.")
    name = _text(item["name"], "A resource's name", empty=False)
    what = f"Resource {name}:"
    description = item.get("description", item.get("desc", ""))
    description = _text("" if description is None else description, f"{what} description")
    unit = item.get("unit")
    if unit is not None:
        unit = _text(unit, f"{what} unit")
    defaults = {}
    for key in ("base_default", "project_default"):
        value = item.get(key, 0)
        if not _is_int(value) or not 0 <= value <= BIGINT_MAX:
            raise errors.BadRequest(f"{what} {key} must be a non-negative integer.")
        defaults[key] = value
    return Resource(
        name=name, description=description, unit=unit,
        service_type=_text(item["service_type"], f"{what} service_type", empty=False),
        service_origin=_text(item["service_origin"], f"{what} service_origin", empty=False),
        ui_visible=_bool(item, "ui_visible", True), api_visible=_bool(item, "api_visible", True),
        allow_in_projects=_bool(item, "allow_in_projects", True), **defaults)


def resource_info(r: Resource) -> dict[str, Any]:
    """A resource as ``GET /resources`` shows it."""
    return {"service": r.service_origin, "service_type": r.service_type,
            "description": r.description, "unit": r.unit, "ui_visible": r.ui_visible,
            "api_visible": r.api_visible, "allow_in_projects": r.allow_in_projects}


def commission_json(c: Commission) -> dict[str, Any]:
    issue_time = c.issue_time
    if issue_time.tzinfo is None:
        issue_time = issue_time.replace(tzinfo=datetime.UTC)
    return {"serial": c.serial, "name": c.name, "issue_time": issue_time.isoformat(),
            "provisions": [p.as_json() for p in c.provisions]}


class AccountAPI:
    """The ``/account/v1.0`` endpoints as one Klein app (``resource()``)."""

    def __init__(self, accounts: Accounts, quota: LocalQuotaHolder, projects: Any,
                 catalog: Any, max_body: int = MAX_JSON_BODY):
        self._accounts = accounts
        self._quota = quota
        self._projects = projects
        self._catalog = catalog
        self._max_body = max_body
        self.app = make_app()
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/resources", self.resources),
            ("GET", "/quotas", self.quotas),
            ("GET", "/service_quotas", self.service_quotas),
            ("GET", "/service_project_quotas", self.service_project_quotas),
            ("GET", "/commissions", self.pending),
            ("POST", "/commissions", self.issue),
            ("POST", "/commissions/action", self.resolve),
            ("GET", f"/commissions/<int(max={BIGINT_MAX}):serial>", self.commission),
            ("POST", f"/commissions/<int(max={BIGINT_MAX}):serial>/action", self.action),
            ("POST", "/user_catalogs", self.user_catalogs),
            ("POST", "/service/user_catalogs", self.service_user_catalogs),
            ("POST", "/service/resources", self.register_resources),
            ("GET", "/service/resources", self.component_resources),
            ("POST", "/feedback", self.feedback),
            ("POST", "/myaccount/default_project", self.default_project),
        ]
        for method, path, handler in routes:
            self._route(method, path, handler)
        from snfd.identity.projects_api import add_project_routes

        with self.app.subroute(PREFIX) as app:
            add_project_routes(app, projects, max_body=max_body)

    def _route(self, method: str, path: str, handler: Handler) -> None:
        async def endpoint(request: Any, **kwargs: Any) -> bytes:
            return await handler(request, **kwargs)

        name = f"account:{method}:{path}"
        endpoint.__name__ = name
        self.app.route(PREFIX + path, methods=[method], endpoint=name,
                       strict_slashes=False)(endpoint)

    def resource(self) -> IResource:
        return self.app.resource()

    def _json(self, request: Any) -> dict[str, Any]:
        return json_object(read_json(request, self._max_body))

    # -- resources and quotas ----------------------------------------------

    async def resources(self, request: Any) -> bytes:
        """Public: the API-visible resources by name."""
        found = await self._quota.resources()
        return json_body(request, {r.name: resource_info(r) for r in found if r.api_visible})

    async def quotas(self, request: Any) -> bytes:
        """The calling user's quotas in the projects where they are an
        accepted member."""
        user = user_of(request).user
        assert user is not None
        projects = [str(p.id) for p in await self._accounts.user_projects(user)]
        return json_body(request, await self._quota.quotas_for_user(user, projects))

    async def service_quotas(self, request: Any) -> bytes:
        """The calling component's resources, per user and project;
        ``?user=`` and ``?project=`` take one uuid or a comma list."""
        component = self._component(request)
        users = _comma_list(_query(request, "user"))
        projects = _comma_list(_query(request, "project"))
        result: dict[str, Any] = {}
        if users is None:
            result = await self._quota.service_quotas(component)
        else:
            for user in users:
                try:
                    result.update(await self._quota.service_quotas(component, user))
                except errors.NotFound:
                    pass
        if projects is not None:
            result = {u: {p: q for p, q in by_project.items() if p in projects}
                      for u, by_project in result.items()}
            result = {u: v for u, v in result.items() if v}
        if users is not None and not result:
            raise errors.NotFound(f"No user with UUID '{','.join(users)}'")
        return json_body(request, result)

    async def service_project_quotas(self, request: Any) -> bytes:
        """The calling component's resources per project (``?project=``
        takes one uuid or a comma list)."""
        component = self._component(request)
        projects = _comma_list(_query(request, "project"))
        result: dict[str, Any] = {}
        if projects is None:
            result = await self._quota.service_project_quotas(component)
        else:
            for project in projects:
                try:
                    result.update(await self._quota.service_project_quotas(component, project))
                except errors.NotFound:
                    pass
            if not result:
                raise errors.NotFound(f"No project with UUID '{','.join(projects)}'")
        return json_body(request, result)

    async def component_resources(self, request: Any) -> bytes:
        """A service reads its resource definitions as they stand (with the
        defaults administrators set)."""
        component = self._component(request)
        found = await self._quota.component_resources(component)
        return json_body(request, {"resources": [attrs.asdict(r) for r in found]})

    async def register_resources(self, request: Any) -> bytes:
        """A service registers (or updates) its resource definitions."""
        component = self._component(request)
        body = self._json(request)
        _unknown(body, frozenset({"resources"}), "The request body")
        items = body.get("resources")
        if not isinstance(items, list):
            raise errors.BadRequest('"resources" must be a list of resource definitions.')
        resources = [parse_resource(item) for item in items]
        # Projects that exist already get the new resources' defaults too.
        await self._quota.register_resources(component, resources)
        log.info("component {component} registered resources {names}",
                 component=component, names=", ".join(r.name for r in resources))
        return json_body(request, {"resources": [r.name for r in resources]})

    # -- commissions ------------------------------------------------------------

    def _component(self, request: Any) -> str:
        name = component_of(request).component
        assert name is not None
        return name

    async def pending(self, request: Any) -> bytes:
        return json_body(request, await self._quota.pending(self._component(request)))

    async def issue(self, request: Any) -> bytes:
        """Issue a commission: 201 ``{"serial": n}``; 404/413 faults carry
        the offending provision in ``data``."""
        component = self._component(request)
        body = self._json(request)
        _unknown(body, _ISSUE_KEYS, "The request body")
        provisions = parse_provisions(body.get("provisions"))
        force = _bool(body, "force", False)
        auto_accept = _bool(body, "auto_accept", False)
        name = _text(body.get("name", ""), "The commission name")
        serial = await self._quota.issue(component, provisions, name=name, force=force,
                                         auto_accept=auto_accept)
        return json_body(request, {"serial": serial}, 201)

    async def commission(self, request: Any, serial: int) -> bytes:
        c = await self._quota.commission(self._component(request), serial)
        return json_body(request, commission_json(c))

    async def action(self, request: Any, serial: int) -> bytes:
        """Accept or reject one pending commission: 200 with no body."""
        component = self._component(request)
        body = self._json(request)
        _unknown(body, _RESOLVE_KEYS, "The request body")
        accept, reject = "accept" in body, "reject" in body
        if accept == reject:
            raise errors.BadRequest("Specify either accept or reject action.")
        resolution = await self._quota.resolve(component, accept=[serial] if accept else [],
                                               reject=[serial] if reject else [])
        for _, fault in resolution.failed:
            raise fault
        request.setResponseCode(200)
        return b""

    async def resolve(self, request: Any) -> bytes:
        """Accept and reject many commissions; failures are listed, not raised."""
        component = self._component(request)
        body = self._json(request)
        _unknown(body, _RESOLVE_KEYS, "The request body")
        accept, reject = _serials(body, "accept"), _serials(body, "reject")
        # Serials beyond bigint cannot name a commission.
        out_of_range = [s for s in dict.fromkeys(accept + reject) if not 0 < s <= BIGINT_MAX]
        resolution = await self._quota.resolve(
            component, accept=[s for s in accept if s not in out_of_range],
            reject=[s for s in reject if s not in out_of_range])
        failed = [[serial, fault.body()] for serial, fault in resolution.failed]
        failed += [[s, errors.NotFound(f"serial {s} is not a pending commission").body()]
                   for s in out_of_range]
        return json_body(request, {"accepted": resolution.accepted,
                                   "rejected": resolution.rejected, "failed": failed})

    # -- users ------------------------------------------------------------------

    async def user_catalogs(self, request: Any) -> bytes:
        user_of(request)
        return await self._catalogs(request, allow_all=False)

    async def service_user_catalogs(self, request: Any) -> bytes:
        self._component(request)
        return await self._catalogs(request, allow_all=True)

    async def _catalogs(self, request: Any, allow_all: bool) -> bytes:
        """``{"uuid_catalog": {uuid: email}, "displayname_catalog": {email:
        uuid}}``; unknown entries are left out.  ``null`` lists mean every
        user for services and nobody for users."""
        body = self._json(request)
        _unknown(body, frozenset({"uuids", "displaynames"}), "The request body")
        wanted: dict[str, list[str] | None] = {}
        for key in ("uuids", "displaynames"):
            value = body.get(key, [])
            if value is None and not allow_all:
                value = []
            if value is not None:
                if not isinstance(value, list):
                    raise errors.BadRequest(f'"{key}" must be a list of strings.')
                value = [_text(v, f"Items in '{key}'") for v in value]
            wanted[key] = value
        uuids, names = wanted["uuids"], wanted["displaynames"]
        accounts = self._accounts
        everyone: list[tuple[str, str]] | None = None
        if uuids is None or names is None:
            everyone = await accounts.user_catalog(None, None)
        if uuids is None:
            assert everyone is not None
            uuid_catalog = dict(everyone)
        elif uuids:
            pairs = await accounts.user_catalog(uuids, None)
            uuid_catalog = dict(pairs)
        else:
            uuid_catalog = {}
        if names is None:
            assert everyone is not None
            name_catalog = {email: uuid for uuid, email in everyone}
        elif names:
            pairs = await accounts.user_catalog(None, names)
            by_email = {email.lower(): uuid for uuid, email in pairs}
            name_catalog = {n: by_email[n.lower()] for n in names if n.lower() in by_email}
        else:
            name_catalog = {}
        return json_body(request, {"uuid_catalog": uuid_catalog,
                                   "displayname_catalog": name_catalog})

    async def feedback(self, request: Any) -> bytes:
        """Store a user's feedback (form fields ``feedback_msg`` and
        ``feedback_data``): 200 with no body."""
        user = user_of(request).user
        assert user is not None
        fields = self._form(request)
        message = fields.get("feedback_msg", "")
        if not message.strip():
            raise errors.BadRequest("Invalid data: feedback_msg is required.")
        message = _text(message, "feedback_msg")
        data = _text(fields.get("feedback_data", ""), "feedback_data")
        await self._accounts.add_feedback(user, message, data)
        log.info("feedback from {user} stored", user=user)
        request.setResponseCode(200)
        return b""

    def _form(self, request: Any) -> dict[str, str]:
        """Form fields of the body, whatever content type the client named
        (Synnefo's client sends them as application/octet-stream)."""
        content = request.content
        content.seek(0, 2)
        if content.tell() > self._max_body:
            raise errors.OverLimit(f"The request body is larger than {self._max_body} bytes.")
        content.seek(0)
        raw = content.read()
        try:
            fields = {k.decode("utf-8"): v[0].decode("utf-8")
                      for k, v in request.args.items() if v}
            parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True) if raw else {}
            for key, values in parsed.items():
                fields.setdefault(key, values[0])
        except UnicodeDecodeError:
            raise errors.BadRequest("The form is not UTF-8.") from None
        return fields

    async def default_project(self, request: Any) -> bytes:
        """Set the project that new resources of the user are charged to;
        it must be an active project the user is an accepted member of."""
        user = user_of(request).user
        assert user is not None
        body = self._json(request)
        _unknown(body, frozenset({"project_id"}), "The request body")
        project = body.get("project_id")
        if project is None:
            raise errors.BadRequest("Project id not specified.")
        project = _text(project, "project_id", empty=False)
        member_of = {str(p.id) for p in await self._accounts.user_projects(user)}
        if project not in member_of:
            raise errors.Forbidden(f"You are not a member of an active project {project}.")
        await self._accounts.modify_user(user, default_project=project)
        request.setResponseCode(200)
        return b""
