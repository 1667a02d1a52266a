"""The quota holder in process: ``IQuotaHolder`` over the identity tables.

Services on a node that runs the identity service use ``LocalQuotaHolder``
directly; the ``/account/v1.0`` API serves the same object to services on
other nodes.  Besides the protocol it answers the quota read APIs in the
JSON shapes Synnefo's clients expect (``quotas_for_user``,
``service_quotas``, ``service_project_quotas``) and offers the
administrative calls (resource defaults, holding limits).

Quota reads report ``usage = usage_max`` and ``pending = usage_max -
usage_min``; ``project_*`` values come from the project's own holding of
the same resource.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

from zope.interface import implementer

from snfd import errors
from snfd.identity import project_store, quota_store
from snfd.interfaces import IQuotaHolder, IQuotaLedger
from snfd.quota import Commission, Holding, Provision, Resolution, Resource

USER_PREFIX = "user:"
PROJECT_PREFIX = "project:"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def belongs_to(resource: Resource, component: str) -> bool:
    """Whether ``component`` registered ``resource``: its service origin is
    one of the component's services (``cyclades_compute`` for cyclades)."""
    return resource.service_origin.startswith(f"{component}_")


def _body(user: Holding, project: Holding | None) -> dict[str, int]:
    return {"limit": user.limit, "usage": user.usage, "pending": user.pending,
            **_project_body(project)}


def _project_body(project: Holding | None) -> dict[str, int]:
    if project is None:
        return {"project_limit": 0, "project_usage": 0, "project_pending": 0}
    return {"project_limit": project.limit, "project_usage": project.usage,
            "project_pending": project.pending}


def _strip(value: str, prefix: str) -> str:
    return value[len(prefix):] if value.startswith(prefix) else value


def _register_txn(txn: Any, resources: list[Resource], component: str) -> None:
    """Register the definitions and give every existing project and member
    a holding of each (new resources start at their defaults)."""
    quota_store.register_resources_txn(txn, resources, component)
    for r in resources:
        project_store.ensure_resource_holdings_txn(txn, r.name)


@implementer(IQuotaHolder, IQuotaLedger)
class LocalQuotaHolder:
    """``IQuotaHolder`` on the node's database pool (``IDatabase``)."""

    def __init__(self, db: Any):
        self._db = db

    # The protocol

    async def register_resources(self, component: str,
                                 resources: Iterable[Resource]) -> None:
        resources = list(resources)
        for r in resources:
            if not belongs_to(r, component):
                raise errors.BadRequest(
                    f"resource {r.name}: service_origin {r.service_origin!r} is not"
                    f" a service of component {component}")
        await self._db.run("identity.quota.register_resources", _register_txn,
                           resources, component)

    async def component_resources(self, component: str) -> list[Resource]:
        return [r for r in await self.resources() if belongs_to(r, component)]

    async def issue(self, clientkey: str, provisions: Iterable[Provision], name: str = "",
                    force: bool = False, auto_accept: bool = False) -> int:
        serial: int = await self._db.run(
            "identity.quota.issue", quota_store.issue_txn, clientkey, list(provisions),
            name, force, _now(), auto_accept)
        return serial

    def charge_txn(self, txn: Any, clientkey: str, provisions: Iterable[Provision],
                   name: str = "", force: bool = False) -> int | None:
        return quota_store.charge_txn(txn, clientkey, provisions, name, force, _now())

    def issue_txn(self, txn: Any, clientkey: str, provisions: Iterable[Provision],
                  name: str = "", force: bool = False) -> int:
        serial: int = quota_store.issue_txn(txn, clientkey, list(provisions), name, force,
                                            _now(), False)
        return serial

    def resolve_txn(self, txn: Any, clientkey: str, accept: Iterable[int] = (),
                    reject: Iterable[int] = ()) -> Resolution:
        resolution: Resolution = quota_store.resolve_txn(txn, clientkey, list(accept),
                                                         list(reject), _now())
        return resolution

    def quotas_txn(self, txn: Any, holders: Iterable[str] | None = None,
                   sources: Iterable[str | None] | None = None,
                   resources: Iterable[str] | None = None) -> list[Holding]:
        return quota_store.holdings_txn(txn, holders, sources, resources)

    async def resolve(self, clientkey: str, accept: Iterable[int] = (),
                      reject: Iterable[int] = ()) -> Resolution:
        resolution: Resolution = await self._db.run(
            "identity.quota.resolve", quota_store.resolve_txn, clientkey, list(accept),
            list(reject), _now())
        return resolution

    async def pending(self, clientkey: str) -> list[int]:
        serials: list[int] = await self._db.run(
            "identity.quota.pending", quota_store.pending_txn, clientkey)
        return serials

    async def commission(self, clientkey: str, serial: int) -> Commission:
        commission: Commission = await self._db.run(
            "identity.quota.commission", quota_store.commission_txn, clientkey, serial)
        return commission

    async def quotas(self, holders: Iterable[str] | None = None,
                     sources: Iterable[str | None] | None = None,
                     resources: Iterable[str] | None = None) -> list[Holding]:
        holdings: list[Holding] = await self._db.run(
            "identity.quota.holdings", quota_store.holdings_txn,
            None if holders is None else list(holders),
            None if sources is None else list(sources),
            None if resources is None else list(resources))
        return holdings

    # Administration

    async def clientkeys(self) -> list[str]:
        """The components that have pending commissions, sorted (what
        ``snf-manage reconcile-commissions`` walks by default)."""
        keys: list[str] = await self._db.run(
            "identity.quota.clientkeys", quota_store.clientkeys_txn)
        return keys

    async def resources(self) -> list[Resource]:
        """Every resource definition, sorted by name."""
        found: list[Resource] = await self._db.run(
            "identity.quota.resources", quota_store.list_resources_txn)
        return found

    async def modify_resource(self, name: str, base_default: int | None = None,
                              project_default: int | None = None,
                              ui_visible: bool | None = None, api_visible: bool | None = None,
                              allow_in_projects: bool | None = None) -> Resource:
        """Set what an administrator controls (``None`` keeps a value);
        ``NotFound`` for an unknown resource."""
        resource: Resource = await self._db.run(
            "identity.quota.modify_resource", quota_store.modify_resource_txn, name,
            base_default, project_default, ui_visible, api_visible, allow_in_projects)
        return resource

    async def set_limit(self, holder: str, source: str | None, resource: str,
                        limit: int) -> Holding:
        """Create a holding or change its limit (usage is kept)."""
        holding: Holding = await self._db.run(
            "identity.quota.set_limit", quota_store.set_limit_txn, holder, source,
            resource, limit)
        return holding

    # Read APIs (reference section 1.5)

    async def quotas_for_user(self, user_uuid: str,
                              projects: Sequence[str] | None = None,
                              ) -> dict[str, dict[str, dict[str, int]]]:
        """``GET /account/v1.0/quotas``: ``{project: {resource: {limit, usage,
        pending, project_limit, project_usage, project_pending}}}``.

        Only API-visible resources are shown; ``projects`` (uuids), when
        given, keeps only those sources (the user's accepted memberships).
        """
        visible = [r.name for r in await self.resources() if r.api_visible]
        rows = await self._db.run(
            "identity.quota.user_quotas", quota_store.user_holdings_txn, [user_uuid],
            None if projects is None else list(projects), visible)
        out: dict[str, dict[str, dict[str, int]]] = {}
        for user, project in rows:
            source = _strip(user.source or "", PROJECT_PREFIX)
            out.setdefault(source, {})[user.resource] = _body(user, project)
        return out

    async def service_quotas(self, component: str, user: str | None = None,
                             ) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
        """``GET /account/v1.0/service_quotas[?user=]``: ``{user: {project:
        {resource: {...}}}}`` for the component's resources only.

        Raises ``NotFound`` when ``user`` is given and has no such holding
        (what the reference answers for an unknown user).
        """
        names = [r.name for r in await self.resources() if belongs_to(r, component)]
        rows = await self._db.run(
            "identity.quota.service_quotas", quota_store.user_holdings_txn,
            None if user is None else [user], None, names)
        out: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
        for u, project in rows:
            holder = _strip(u.holder, USER_PREFIX)
            source = _strip(u.source or "", PROJECT_PREFIX)
            out.setdefault(holder, {}).setdefault(source, {})[u.resource] = _body(u, project)
        if user is not None and not out:
            raise errors.NotFound(f"No such user '{user}'")
        return out

    async def service_project_quotas(self, component: str, project: str | None = None,
                                     ) -> dict[str, dict[str, dict[str, int]]]:
        """``GET /account/v1.0/service_project_quotas[?project=]``:
        ``{project: {resource: {project_limit, project_usage,
        project_pending}}}`` for the component's resources only.

        Raises ``NotFound`` when ``project`` is given and has no such holding.
        """
        names = [r.name for r in await self.resources() if belongs_to(r, component)]
        holdings = await self._db.run(
            "identity.quota.service_project_quotas", quota_store.holdings_txn,
            None if project is None else [f"{PROJECT_PREFIX}{project}"], [None], names)
        out: dict[str, dict[str, dict[str, int]]] = {}
        for h in holdings:
            if not h.holder.startswith(PROJECT_PREFIX):
                continue
            out.setdefault(_strip(h.holder, PROJECT_PREFIX), {})[h.resource] = (
                _project_body(h))
        if project is not None and not out:
            raise errors.NotFound(f"No such project '{project}'")
        return out
