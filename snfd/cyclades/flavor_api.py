"""The flavor routes of the compute API, in both dialects: listing and
showing for everyone; creating, describing and deleting flavors, their
access lists (``os-flavor-access``, ``addTenantAccess``,
``removeTenantAccess``) and extra specs (``os-extra_specs``) for
administrators (403 for others), as Nova 2.1 answers them; from
microversion 2.55 flavors show their ``description`` (also in the short
listing) and ``PUT /flavors/<id>`` changes it, from 2.61 a flavor's
detail (show, detailed listing, create and update answers) shows its
``extra_specs``.  What may be
seen and changed is ``snfd.cyclades.flavors``; a flavor is named by the
dialect's id (Synnefo's serial id, Nova's ``flavorid``:
``views.flavor_ref``).  ``ComputeAPI`` mounts ``FlavorAPI.routes()``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.compute_http import (
    body_of,
    count,
    empty,
    int_id,
    is_admin,
    object_of,
    page,
    projects_of,
    query,
    require_admin,
    views_of,
)
from snfd.cyclades.flavors import Flavors, check_extra_specs, parse_create, parse_is_public
from snfd.cyclades.model import Flavor
from snfd.web.app import json_body, json_object

Handler = Callable[..., Awaitable[bytes]]


def flavor_view(request: Any, flavor: Flavor, detail: bool = True) -> dict[str, Any]:
    """A flavor in the request's dialect (Nova's: at its microversion)."""
    views = views_of(request)
    if views.negotiates:
        shown: dict[str, Any] = views.flavor(flavor, detail, version=request.microversion)
        return shown
    synnefo: dict[str, Any] = views.flavor(flavor, detail)
    return synnefo


class FlavorAPI:
    """See the module docstring."""

    def __init__(self, flavors: Flavors, max_body: int):
        self._flavors = flavors
        self._max_body = max_body

    def routes(self) -> list[tuple[str, str, Handler]]:
        f = "/flavors/<flavor_id>"
        return [
            ("GET", "/flavors", self.list_flavors),
            ("GET", "/flavors/detail", self.list_flavors_detail),
            ("POST", "/flavors", self.create_flavor),
            ("GET", f, self.show_flavor),
            ("PUT", f, self.update_flavor),
            ("DELETE", f, self.delete_flavor),
            ("POST", f + "/action", self.flavor_action),
            ("GET", f + "/os-flavor-access", self.flavor_access),
            ("GET", f + "/os-extra_specs", self.extra_specs),
            ("POST", f + "/os-extra_specs", self.set_extra_specs),
            ("GET", f + "/os-extra_specs/<key>", self.extra_spec),
            ("PUT", f + "/os-extra_specs/<key>", self.set_extra_spec),
            ("DELETE", f + "/os-extra_specs/<key>", self.unset_extra_spec),
        ]

    async def find(self, request: Any, flavor_id: str) -> Flavor:
        """The flavor the dialect's id names, as the caller may see it."""
        admin = is_admin(request)
        if views_of(request).serial_flavor_ids:
            return await self._flavors.by_id(int_id(flavor_id, "Flavor"),
                                             projects_of(request), admin)
        return await self._flavors.by_flavorid(flavor_id, projects_of(request), admin)

    def _show(self, request: Any, flavor: Flavor) -> bytes:
        return json_body(request, {"flavor": flavor_view(request, flavor)})

    # -- reads ------------------------------------------------------------------------

    async def _listing(self, request: Any, detail: bool) -> bytes:
        """The flavors the caller sees (administrators: by ``is_public``),
        by id, filtered by ``minRam`` and ``minDisk`` and paged by
        ``marker`` (the dialect's id) and ``limit``."""
        v = views_of(request)
        admin = is_admin(request)
        found = await self._flavors.listed(
            projects_of(request), admin,
            parse_is_public(query(request, "is_public")) if admin else True,
            hide_disabled=v.hides_disabled_flavors)
        for key, of in (("minRam", lambda f: f.ram), ("minDisk", lambda f: f.disk)):
            value = query(request, key)
            if value is not None:
                least = count(value, key)
                found = [f for f in found if of(f) >= least]
        found = page(request, found, "Flavor", key=v.flavor_ref)
        return json_body(request, {"flavors": [flavor_view(request, f, detail)
                                               for f in found]})

    async def list_flavors(self, request: Any) -> bytes:
        return await self._listing(request, False)

    async def list_flavors_detail(self, request: Any) -> bytes:
        return await self._listing(request, True)

    async def show_flavor(self, request: Any, flavor_id: str) -> bytes:
        return self._show(request, await self.find(request, flavor_id))

    # -- administrators' changes ----------------------------------------------------------

    async def create_flavor(self, request: Any) -> bytes:
        """``POST /flavors``: 200 with the new flavor; 409 when its name or
        id is taken."""
        require_admin(request, "os_compute_api:os-flavor-manage:create")
        req = parse_create(object_of(request, "flavor", self._max_body))
        return self._show(request, await self._flavors.create(req))

    async def update_flavor(self, request: Any, flavor_id: str) -> bytes:
        """``PUT /flavors/<id>`` ``{"flavor": {"description": ...}}`` (the
        only thing Nova lets change)."""
        require_admin(request, "os_compute_api:os-flavor-manage:update")
        body = object_of(request, "flavor", self._max_body)
        if set(body) != {"description"}:
            raise errors.BadRequest("Only the description of a flavor can be changed.")
        flavor = await self.find(request, flavor_id)
        return self._show(request, await self._flavors.describe(flavor, body["description"]))

    async def delete_flavor(self, request: Any, flavor_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-flavor-manage:delete")
        await self._flavors.delete(await self.find(request, flavor_id))
        return empty(request, 202)

    # -- access ---------------------------------------------------------------------------

    @staticmethod
    def _access(request: Any, flavor: Flavor) -> bytes:
        return json_body(request, {"flavor_access": [
            {"flavor_id": views_of(request).flavor_ref(flavor), "tenant_id": p}
            for p in Flavors.access(flavor)]})

    async def flavor_access(self, request: Any, flavor_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-flavor-access")
        return self._access(request, await self.find(request, flavor_id))

    async def flavor_action(self, request: Any, flavor_id: str) -> bytes:
        """``addTenantAccess`` / ``removeTenantAccess`` ``{"tenant": p}``:
        the access list after."""
        require_admin(request, "os_compute_api:os-flavor-access:add_tenant_access")
        body = json_object(body_of(request, self._max_body))
        if len(body) != 1 or next(iter(body)) not in ("addTenantAccess", "removeTenantAccess"):
            raise errors.BadRequest("The action must be addTenantAccess or"
                                    " removeTenantAccess.")
        action, args = next(iter(body.items()))
        tenant = args.get("tenant") if isinstance(args, dict) else None
        if not isinstance(tenant, str) or not 1 <= len(tenant) <= 255:
            raise errors.BadRequest(f"{action} needs a tenant (a project id).")
        flavor = await self.find(request, flavor_id)
        if action == "addTenantAccess":
            flavor = await self._flavors.add_access(flavor, tenant)
        else:
            flavor = await self._flavors.remove_access(flavor, tenant)
        return self._access(request, flavor)

    # -- extra specs ------------------------------------------------------------------------

    async def extra_specs(self, request: Any, flavor_id: str) -> bytes:
        flavor = await self.find(request, flavor_id)
        return json_body(request, {"extra_specs": dict(flavor.extra_specs)})

    async def set_extra_specs(self, request: Any, flavor_id: str) -> bytes:
        """``POST``: merge; 200 with the specs given."""
        require_admin(request, "os_compute_api:os-flavor-extra-specs:create")
        specs = check_extra_specs(json_object(body_of(request, self._max_body))
                                  .get("extra_specs"))
        await self._flavors.set_specs(await self.find(request, flavor_id), specs)
        return json_body(request, {"extra_specs": specs})

    async def extra_spec(self, request: Any, flavor_id: str, key: str) -> bytes:
        flavor = await self.find(request, flavor_id)
        if key not in flavor.extra_specs:
            raise errors.NotFound(f"Flavor {flavor_id[:80]} has no extra specs with key"
                                  f" {key[:80]}.")
        return json_body(request, {key: flavor.extra_specs[key]})

    async def set_extra_spec(self, request: Any, flavor_id: str, key: str) -> bytes:
        """``PUT {key: value}``: exactly the key of the path (400 else)."""
        require_admin(request, "os_compute_api:os-flavor-extra-specs:update")
        body = json_object(body_of(request, self._max_body))
        if list(body) != [key]:
            raise errors.BadRequest("The request body must hold exactly the key of the"
                                    " path." if key in body or len(body) != 1
                                    else "The request body and URI do not match.")
        specs = check_extra_specs(body)
        await self._flavors.set_specs(await self.find(request, flavor_id), specs)
        return json_body(request, specs)

    async def unset_extra_spec(self, request: Any, flavor_id: str, key: str) -> bytes:
        require_admin(request, "os_compute_api:os-flavor-extra-specs:delete")
        await self._flavors.unset_spec(await self.find(request, flavor_id), key)
        return empty(request, 200)
