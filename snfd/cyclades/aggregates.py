"""Host aggregates (Nova's ``os-aggregates``): named groups of backends
with metadata, kept by administrators.  An aggregate's availability zone
(also its ``availability_zone`` metadata key, as in Nova) is the zone its
backends serve: ``os-availability-zone`` lists the zones, and a server
created with ``availability_zone`` goes to a backend of that zone
(``zone_backends``; backends in no zone serve ``nova``, the default).

Names are 1..255 characters without surrounding blanks and unique; a
zone name likewise (400); adding a backend twice or removing one that is
not there is 409/404; an aggregate with backends is not deleted (400, as
Nova).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snfd import errors
from snfd.cyclades import store
from snfd.cyclades.model import Aggregate

DEFAULT_ZONE = "nova"


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 255 or value != value.strip() \
            or not value.isprintable():
        raise errors.BadRequest(f"Invalid input for field/attribute {what}: 1 to 255"
                                " printable characters without surrounding blanks.")
    return value


def check_metadata(value: Any) -> dict[str, str | None]:
    """``set_metadata``'s items: keys 1..255, values text up to 255 or
    ``null`` (remove), else 400."""
    if not isinstance(value, dict) or not value:
        raise errors.BadRequest('set_metadata needs a non-empty "metadata" object.')
    out: dict[str, str | None] = {}
    for key, item in value.items():
        _name(key, "metadata key")
        if item is not None and (not isinstance(item, str) or len(item) > 255):
            raise errors.BadRequest(f"The value of {key!r} must be text (at most 255) or"
                                    " null.")
        out[key] = item
    return out


class Aggregates:
    """See the module docstring.  ``db``: the node's ``IDatabase``."""

    def __init__(self, db: Any):
        self._db = db

    async def all(self) -> list[Aggregate]:
        found: list[Aggregate] = await self._db.run("cyclades.aggregates",
                                                    store.aggregates_txn)
        return found

    async def get(self, aggregate_id: str) -> Aggregate:
        """404 for an id that is not one."""
        if aggregate_id.isdigit() and len(aggregate_id) < 10:
            found = await self._db.run("cyclades.aggregate", store.aggregates_txn,
                                       int(aggregate_id))
            if found:
                aggregate: Aggregate = found[0]
                return aggregate
        raise errors.NotFound(f"Aggregate {aggregate_id[:40]} could not be found.")

    async def create(self, name: Any, zone: Any = None) -> Aggregate:
        zone = None if zone is None else _name(zone, "availability_zone")
        made: Aggregate | None = await self._db.run(
            "cyclades.create_aggregate", store.create_aggregate_txn, _name(name, "name"), zone)
        if made is None:
            raise errors.Conflict(f"Aggregate {name} already exists.")
        return made

    async def _update(self, aggregate: Aggregate, **changes: Any) -> Aggregate:
        changed: Aggregate | None = await self._db.run(
            "cyclades.update_aggregate", store.update_aggregate_txn, aggregate.id, **changes)
        if changed is None:
            raise errors.Conflict(f"Aggregate {changes.get('new_name')} already exists.")
        return changed

    async def update(self, aggregate: Aggregate, body: Mapping[str, Any]) -> Aggregate:
        """``name`` and/or ``availability_zone`` (``null`` clears it)."""
        if not body or set(body) - {"name", "availability_zone"}:
            raise errors.BadRequest("Give name and/or availability_zone, nothing else.")
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["new_name"] = _name(body["name"], "name")
        if "availability_zone" in body:
            zone = body["availability_zone"]
            zone = None if zone is None else _name(zone, "availability_zone")
            meta = {k: v for k, v in aggregate.metadata.items() if k != "availability_zone"}
            if zone is not None:
                meta["availability_zone"] = zone
            changes.update(zone=zone, set_zone=True, metadata=meta)
        return await self._update(aggregate, **changes)

    async def set_metadata(self, aggregate: Aggregate,
                           items: Mapping[str, str | None]) -> Aggregate:
        """Merge (``None`` removes); ``availability_zone`` is the zone."""
        meta = {**aggregate.metadata}
        for key, value in items.items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        changes: dict[str, Any] = {"metadata": meta}
        if "availability_zone" in items:
            changes.update(zone=meta.get("availability_zone"), set_zone=True)
        return await self._update(aggregate, **changes)

    async def delete(self, aggregate: Aggregate) -> None:
        if aggregate.hosts:
            raise errors.BadRequest(f"Aggregate {aggregate.id} still has hosts:"
                                    f" {', '.join(aggregate.hosts)}.")
        await self._db.run("cyclades.delete_aggregate", store.delete_aggregate_txn,
                           aggregate.id)

    async def add_host(self, aggregate: Aggregate, backend_id: int, host: str) -> Aggregate:
        if not await self._db.run("cyclades.aggregate_host", store.aggregate_host_txn,
                                  aggregate.id, backend_id, True):
            raise errors.Conflict(f"Host {host} is already in aggregate {aggregate.id}.")
        return await self.get(str(aggregate.id))

    async def remove_host(self, aggregate: Aggregate, backend_id: int,
                          host: str) -> Aggregate:
        if not await self._db.run("cyclades.aggregate_host", store.aggregate_host_txn,
                                  aggregate.id, backend_id, False):
            raise errors.NotFound(f"Host {host} is not in aggregate {aggregate.id}.")
        return await self.get(str(aggregate.id))

    async def zones(self, hosts: list[str]) -> dict[str, list[str]]:
        """Zone -> the backends (cluster names) serving it: those of the
        aggregates with that zone; the rest serve ``nova``."""
        zones: dict[str, list[str]] = {}
        placed: set[str] = set()
        for aggregate in await self.all():
            if aggregate.availability_zone:
                members = zones.setdefault(aggregate.availability_zone, [])
                members += [h for h in aggregate.hosts if h not in members]
                placed.update(aggregate.hosts)
        rest = [h for h in hosts if h not in placed]
        if rest or not zones:
            zones.setdefault(DEFAULT_ZONE, []).extend(rest)
        return zones
