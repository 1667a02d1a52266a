"""Flavors: who sees which, and what administrators change (Nova's flavor
management, flavor access and extra specs), over ``snfd.cyclades.store``.

Two kinds share one table (cyclades migration 0004).  Synnefo's flavors
are unnamed and unique by shape (cpu, ram, disk, disk template); the
operator makes them with ``snf-manage flavor-create`` and the update path
when Ganeti reports a resize.  Nova's administrators make named ones
(``POST /compute/v2.1/flavors``) with an id of their choosing (a UUID
otherwise), swap, ephemeral disk and an rxtx factor; several may share a
shape.  Their disk template is ``[cyclades] flavor_disk_template`` until
the extra spec ``SNF:disk_template`` names another.  Other extra specs are
kept and shown, not interpreted.

Visibility is Nova's: a user sees the public flavors and the private ones
whose access list holds one of its projects; ``allow_create`` false is
Nova's "disabled" and hides a flavor from users' listings in Nova's
dialect (Synnefo's lists it with ``SNF:allow_create`` false; neither hides
it from ``show``, so servers using it still resolve).  Administrators list by
``is_public`` (``True``, the default: the public ones and those of their
projects; ``False``: the private ones; ``None``: all).  A deleted flavor
is gone for everyone but the servers that use it.

Parsing Nova's bodies (``parse_create``, ``check_extra_specs``) gives 400s
in Nova's words: names 1..255 printable characters without surrounding
blanks, ids of ``[a-zA-Z0-9. _-]`` (numbers are taken as their text),
ram/vcpus positive and disk/swap/ephemeral non-negative integers (or their
digits as text), rxtx a positive number, booleans as Nova's strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from snfd import errors
from snfd.cyclades import store
from snfd.cyclades.model import Flavor

MAX_INT = 2 ** 31 - 1
DISK_TEMPLATE_SPEC = "SNF:disk_template"
_ID = re.compile(r"^(?! )[a-zA-Z0-9. _-]+(?<! )$")
_SPEC_KEY = re.compile(r"^[a-zA-Z0-9_\-. :]{1,255}$")
_TEMPLATE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TRUE = frozenset({"1", "t", "true", "on", "y", "yes"})
_FALSE = frozenset({"0", "f", "false", "off", "n", "no"})
_CREATE_KEYS = frozenset({"name", "id", "ram", "vcpus", "disk", "swap",
                          "OS-FLV-EXT-DATA:ephemeral", "rxtx_factor",
                          "os-flavor-access:is_public", "description"})


@attrs.frozen
class FlavorCreate:
    """A checked ``POST /flavors`` body."""

    name: str
    flavorid: str | None
    ram: int
    vcpus: int
    disk: int
    swap: int = 0
    ephemeral: int = 0
    rxtx_factor: float = 1.0
    public: bool = True
    description: str | None = None


def parse_bool(value: Any, what: str) -> bool:
    """A Nova boolean: JSON true/false or one of its strings, else 400."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise errors.BadRequest(f"{what} must be a boolean, not {str(value)[:40]!r}.")


def parse_is_public(value: str | None) -> bool | None:
    """An administrator's ``is_public`` listing filter: absent means
    ``True``; ``none`` means every flavor (``None``)."""
    if value is None:
        return True
    if value.strip().lower() == "none":
        return None
    return parse_bool(value, "is_public")


def _integer(value: Any, what: str, least: int) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 12:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.BadRequest(f"Invalid input for field/attribute {what}: an integer.")
    if not least <= value <= MAX_INT:
        raise errors.BadRequest(f"Invalid input for field/attribute {what}: {value} is"
                                f" outside {least}..{MAX_INT}.")
    return value


def _rxtx(value: Any) -> float:
    if isinstance(value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 < value <= 3.40282e38):
        raise errors.BadRequest("Invalid input for field/attribute rxtx_factor: a number"
                                " above 0.")
    return float(value)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 255 or value != value.strip() \
            or not value.isprintable():
        raise errors.BadRequest("Invalid input for field/attribute name: 1 to 255 printable"
                                " characters, without leading or trailing blanks.")
    return value


def _flavorid(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 1 <= len(value) <= 255 or not _ID.match(value):
        raise errors.BadRequest("Invalid input for field/attribute id: up to 255 letters,"
                                " digits, '.', '_', '-' and inner spaces.")
    return value


def check_description(value: Any) -> str | None:
    """A flavor's description: ``None`` or text of at most 65535, else 400."""
    if value is not None and (not isinstance(value, str) or len(value) > 65535):
        raise errors.BadRequest("The description must be text of at most 65535 characters.")
    return value


def parse_create(body: Mapping[str, Any]) -> FlavorCreate:
    """The ``flavor`` object of ``POST /flavors``, checked (400)."""
    unknown = set(body) - _CREATE_KEYS
    if unknown:
        raise errors.BadRequest("Additional properties are not allowed"
                                f" ({', '.join(sorted(unknown))[:200]} unexpected).")
    for key in ("name", "ram", "vcpus", "disk"):
        if key not in body:
            raise errors.BadRequest(f"'{key}' is a required property.")
    description = check_description(body.get("description"))
    return FlavorCreate(
        name=_name(body["name"]), flavorid=_flavorid(body.get("id")),
        ram=_integer(body["ram"], "ram", 1), vcpus=_integer(body["vcpus"], "vcpus", 1),
        disk=_integer(body["disk"], "disk", 0),
        swap=_integer(body.get("swap", 0), "swap", 0),
        ephemeral=_integer(body.get("OS-FLV-EXT-DATA:ephemeral", 0),
                           "OS-FLV-EXT-DATA:ephemeral", 0),
        rxtx_factor=_rxtx(body.get("rxtx_factor", 1.0)),
        public=parse_bool(body.get("os-flavor-access:is_public", True),
                          "os-flavor-access:is_public"),
        description=description)


def check_extra_specs(value: Any) -> dict[str, str]:
    """Extra specs to set: keys of ``[a-zA-Z0-9_-. :]`` (1..255), values
    strings, numbers or booleans (kept as text, at most 255), else 400."""
    if not isinstance(value, dict):
        raise errors.BadRequest('The request needs an "extra_specs" object.')
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _SPEC_KEY.match(key):
            raise errors.BadRequest(f"Invalid extra spec key {str(key)[:40]!r}.")
        if isinstance(item, bool):
            item = str(item)
        elif isinstance(item, int | float):
            item = str(item)
        if not isinstance(item, str) or len(item) > 255:
            raise errors.BadRequest(f"The value of extra spec {key!r} must be text of at"
                                    " most 255 characters.")
        if key == DISK_TEMPLATE_SPEC and not _TEMPLATE.match(item):
            raise errors.BadRequest(f"{item[:40]!r} is not a Ganeti disk template.")
        out[key] = item
    return out


def visible(flavor: Flavor, projects: Sequence[str]) -> bool:
    """Whether a user in ``projects`` may see ``flavor`` at all."""
    return not flavor.deleted and (flavor.public or any(p in flavor.access for p in projects))


class Flavors:
    """Flavor reads for everyone and changes for administrators (the
    caller checks who is one).

    @param db: the node's ``IDatabase``.
    @param disk_template: the Ganeti disk template of flavors made
        through Nova's API.
    """

    def __init__(self, db: Any, disk_template: str = "drbd"):
        self._db = db
        self._template = disk_template

    async def listed(self, projects: Sequence[str], admin: bool = False,
                     is_public: bool | None = True,
                     hide_disabled: bool = True) -> list[Flavor]:
        """What a listing shows, by serial id: see the module docstring
        (``hide_disabled`` false: users see disabled flavors too, as
        Synnefo's dialect shows them with ``SNF:allow_create`` false)."""
        found: list[Flavor] = await self._db.run("cyclades.flavors", store.flavors_txn)
        if not admin:
            return [f for f in found
                    if visible(f, projects) and (f.allow_create or not hide_disabled)]
        if is_public is None:
            return found
        if is_public:
            return [f for f in found if visible(f, projects)]
        return [f for f in found if not f.public]

    async def by_id(self, flavor_id: int, projects: Sequence[str],
                    admin: bool = False) -> Flavor:
        """A flavor by its serial id (Synnefo's dialect); 404 when missing,
        deleted, or private to others."""
        found: Flavor | None = await self._db.run("cyclades.flavor", store.flavor_txn,
                                                  flavor_id)
        if found is None or not (visible(found, projects) or (admin and not found.deleted)):
            raise errors.NotFound(f"Flavor {flavor_id} not found.")
        return found

    async def by_flavorid(self, flavorid: str, projects: Sequence[str],
                          admin: bool = False) -> Flavor:
        """A flavor by its Nova id; 404 as ``by_id``."""
        found: Flavor | None = await self._db.run("cyclades.flavor_by_flavorid",
                                                  store.flavor_by_flavorid_txn, flavorid)
        if found is None or not (admin or visible(found, projects)):
            raise errors.NotFound(f"Flavor {flavorid[:80]} could not be found.")
        return found

    async def create(self, req: FlavorCreate) -> Flavor:
        """A new named flavor; 409 when the name or the id is taken."""
        made: Flavor | None = await self._db.run(
            "cyclades.create_named_flavor", store.create_named_flavor_txn, req.name,
            req.flavorid, req.vcpus, req.ram, req.disk, self._template, swap=req.swap,
            ephemeral=req.ephemeral, rxtx_factor=req.rxtx_factor, public=req.public,
            description=req.description)
        if made is None:
            raise errors.Conflict(f"Flavor with name {req.name} or id {req.flavorid}"
                                  " already exists.")
        return made

    async def _update(self, flavor: Flavor, **settings: Any) -> Flavor:
        changed: Flavor | None = await self._db.run(
            "cyclades.update_flavor", store.update_flavor_txn, flavor.id, **settings)
        assert changed is not None
        return changed

    async def delete(self, flavor: Flavor) -> None:
        """Gone for new servers and listings; servers using it keep it."""
        await self._update(flavor, deleted=True)

    async def describe(self, flavor: Flavor, description: Any) -> Flavor:
        return await self._update(flavor, description=check_description(description))

    # -- access ---------------------------------------------------------------------

    @staticmethod
    def access(flavor: Flavor) -> list[str]:
        """The projects of a private flavor; 404 for a public one (Nova)."""
        if flavor.public:
            raise errors.NotFound("Access list not available for public flavors.")
        return list(flavor.access)

    async def add_access(self, flavor: Flavor, project: str) -> Flavor:
        if flavor.public:
            raise errors.Conflict("Can not add access to a public flavor.")
        if project in flavor.access:
            raise errors.Conflict(f"Flavor access already exists for flavor"
                                  f" {flavor.flavorid} and project {project} combination.")
        return await self._update(flavor, access=[*flavor.access, project])

    async def remove_access(self, flavor: Flavor, project: str) -> Flavor:
        if project not in flavor.access:
            raise errors.NotFound(f"Flavor access not found for {flavor.flavorid} /"
                                  f" {project} combination.")
        return await self._update(flavor, access=[p for p in flavor.access if p != project])

    # -- extra specs ------------------------------------------------------------------

    async def set_specs(self, flavor: Flavor, specs: Mapping[str, str]) -> Flavor:
        """Merge ``specs`` (checked by ``check_extra_specs``) into the
        flavor's; ``SNF:disk_template`` becomes its disk template."""
        settings: dict[str, Any] = {"extra_specs": {**flavor.extra_specs, **specs}}
        if DISK_TEMPLATE_SPEC in specs:
            settings["disk_template"] = specs[DISK_TEMPLATE_SPEC]
        return await self._update(flavor, **settings)

    async def unset_spec(self, flavor: Flavor, key: str) -> Flavor:
        """Drop one extra spec (404 when absent); without
        ``SNF:disk_template`` the flavor's template goes back to the
        default."""
        if key not in flavor.extra_specs:
            raise errors.NotFound(f"Flavor {flavor.flavorid} has no extra specs with key"
                                  f" {key[:80]}.")
        settings: dict[str, Any] = {"extra_specs": {k: v for k, v in flavor.extra_specs.items()
                                                    if k != key}}
        if key == DISK_TEMPLATE_SPEC and flavor.label is not None:
            settings["disk_template"] = self._template
        return await self._update(flavor, **settings)
