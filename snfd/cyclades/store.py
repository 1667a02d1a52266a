"""The compute service's persistence: backends, flavors, servers,
diagnostics, keypairs and build parameters (``schema/0001_cyclades.sql``).

SQL lives only in the ``*_txn(txn, ...)`` functions here; callers run them
through the node's pool (``await db.run("cyclades.<name>", fn, ...)``) and
get plain values from ``snfd.cyclades.model``.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from psycopg2.extras import Json

from snfd.cyclades.model import (
    Aggregate,
    Flavor,
    GanetiBackend,
    InstanceAction,
    JobEvent,
    Migration,
    Server,
    ServerGroup,
)
from snfd.cyclades.networks import store as network_store
from snfd.cyclades.volumes import store as volume_store
from snfd.db import prepared

# -- backends -------------------------------------------------------------

_BACKEND_COLUMNS = (
    "id", "clustername", "rapi_url", "username", "password", "certificate", "offline",
    "drained", "public", "projects", "disk_templates", "hypervisor", "events", "mfree",
    "mtotal", "dfree", "dtotal", "pinst_cnt", "ctotal", "stats_updated", "created")
_BACKEND_SELECT = "SELECT " + ", ".join(_BACKEND_COLUMNS) + " FROM cyclades_backends"
# What backend-modify may change.
BACKEND_SETTINGS = frozenset({
    "rapi_url", "username", "password", "certificate", "offline", "drained", "public",
    "projects", "disk_templates", "hypervisor", "events"})
_BACKEND_STATS = frozenset({"mfree", "mtotal", "dfree", "dtotal", "pinst_cnt", "ctotal"})


def _backend(row: Any) -> GanetiBackend:
    values = dict(zip(_BACKEND_COLUMNS, row, strict=True))
    values["projects"] = tuple(values["projects"] or ())
    values["disk_templates"] = tuple(values["disk_templates"] or ())
    values["stats_updated"] = _finite(values["stats_updated"])
    return GanetiBackend(**values)


def add_backend_txn(txn: Any, clustername: str, rapi_url: str,
                    **settings: Any) -> GanetiBackend:
    """Insert a backend; ``settings`` are ``BACKEND_SETTINGS`` columns."""
    _check(settings, BACKEND_SETTINGS)
    names = ["clustername", "rapi_url", *settings]
    values = [clustername, rapi_url, *(_list(v) for v in settings.values())]
    txn.execute(
        f"INSERT INTO cyclades_backends ({', '.join(names)})"
        f" VALUES ({', '.join(['%s'] * len(names))}) RETURNING id", values)
    backend_id = txn.fetchone()[0]
    found = backend_txn(txn, backend_id)
    assert found is not None
    return found


def backend_txn(txn: Any, backend_id: int | None = None, *,
                clustername: str | None = None, for_update: bool = False) -> GanetiBackend | None:
    """One backend by id or by cluster name, or None."""
    lock = " FOR UPDATE" if for_update else ""
    if clustername is not None:
        txn.execute(f"{_BACKEND_SELECT} WHERE clustername = %s{lock}", (clustername,))
    else:
        txn.execute(f"{_BACKEND_SELECT} WHERE id = %s{lock}", (backend_id,))
    row = txn.fetchone()
    return _backend(row) if row else None


def backends_txn(txn: Any, *, usable_only: bool = False, for_update: bool = False,
                 events: str | None = None) -> list[GanetiBackend]:
    """All backends by id; ``usable_only``: neither offline nor drained
    (what the allocator considers), ``for_update`` locks those rows."""
    where: list[str] = []
    args: list[Any] = []
    if usable_only:
        where.append("NOT offline AND NOT drained")
    if events is not None:
        where.append("events = %s")
        args.append(events)
    sql = _BACKEND_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
    prepared.execute(txn, sql + (" FOR UPDATE" if for_update else ""), args)
    return [_backend(r) for r in txn.fetchall()]


def update_backend_txn(txn: Any, backend_id: int, **settings: Any) -> GanetiBackend | None:
    """Change ``BACKEND_SETTINGS`` or statistics columns; the new row."""
    _check(settings, BACKEND_SETTINGS | _BACKEND_STATS)
    if settings:
        assignments = ", ".join(f"{k} = %s" for k in settings)
        if _BACKEND_STATS & settings.keys():
            assignments += ", stats_updated = now()"
        txn.execute(f"UPDATE cyclades_backends SET {assignments} WHERE id = %s",
                    [*(_list(v) for v in settings.values()), backend_id])
    return backend_txn(txn, backend_id)


def charge_backend_txn(txn: Any, backend_id: int, ram: int, disk: int,
                       instances: int = 1) -> None:
    """Count an allocation at once: ``ram``/``disk`` MiB fewer free,
    ``instances`` more primary instances (negative undoes)."""
    prepared.execute(txn,
        """UPDATE cyclades_backends SET mfree = mfree - %s, dfree = dfree - %s,
               pinst_cnt = pinst_cnt + %s WHERE id = %s""",
        (ram, disk, instances, backend_id))


def remove_backend_txn(txn: Any, backend_id: int) -> int:
    """Delete a backend that holds no live server; returns how many live
    servers it holds (the backend is deleted only when 0)."""
    txn.execute("SELECT count(*) FROM cyclades_servers WHERE backend_id = %s AND NOT deleted",
                (backend_id,))
    live = int(txn.fetchone()[0])
    if live == 0:
        txn.execute("UPDATE cyclades_servers SET backend_id = NULL WHERE backend_id = %s",
                    (backend_id,))
        txn.execute("DELETE FROM cyclades_backends WHERE id = %s", (backend_id,))
    return live


# -- aggregates -----------------------------------------------------------

_AGGREGATE_SELECT = (
    "SELECT a.id, a.name, a.availability_zone, a.metadata, a.created, a.updated,"
    " COALESCE(array_agg(b.clustername ORDER BY b.clustername)"
    " FILTER (WHERE b.id IS NOT NULL), '{}'), a.uuid"
    " FROM cyclades_aggregates a"
    " LEFT JOIN cyclades_aggregate_hosts h ON h.aggregate_id = a.id"
    " LEFT JOIN cyclades_backends b ON b.id = h.backend_id")


def _aggregate(row: Any) -> Aggregate:
    return Aggregate(id=row[0], name=row[1], availability_zone=row[2],
                     metadata=dict(row[3] or {}), created=row[4], updated=row[5],
                     hosts=tuple(row[6]), uuid=str(row[7]))


def aggregates_txn(txn: Any, aggregate_id: int | None = None) -> list[Aggregate]:
    """Every aggregate (or the one with ``aggregate_id``), by id."""
    where = " WHERE a.id = %s" if aggregate_id is not None else ""
    txn.execute(f"{_AGGREGATE_SELECT}{where} GROUP BY a.id ORDER BY a.id",
                (aggregate_id,) if aggregate_id is not None else ())
    return [_aggregate(r) for r in txn.fetchall()]


def create_aggregate_txn(txn: Any, name: str, zone: str | None) -> Aggregate | None:
    """A new aggregate; ``None`` when the name is taken."""
    txn.execute("""INSERT INTO cyclades_aggregates (name, availability_zone, metadata)
                   VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING id""",
                (name, zone, Json({"availability_zone": zone} if zone else {})))
    row = txn.fetchone()
    return None if row is None else aggregates_txn(txn, row[0])[0]


def update_aggregate_txn(txn: Any, aggregate_id: int, *, new_name: str | None = None,
                         zone: str | None = None, set_zone: bool = False,
                         metadata: Mapping[str, str] | None = None) -> Aggregate | None:
    """Rename, set the zone (``set_zone``; ``None`` clears it) or replace
    the metadata; ``None`` when the new name is taken."""
    sets: list[str] = ["updated = now()"]
    args: list[Any] = []
    if new_name is not None:
        txn.execute("SELECT 1 FROM cyclades_aggregates WHERE name = %s AND id <> %s",
                    (new_name, aggregate_id))
        if txn.fetchone() is not None:
            return None
        sets.append("name = %s")
        args.append(new_name)
    if set_zone:
        sets.append("availability_zone = %s")
        args.append(zone)
    if metadata is not None:
        sets.append("metadata = %s")
        args.append(Json(dict(metadata)))
    txn.execute(f"UPDATE cyclades_aggregates SET {', '.join(sets)} WHERE id = %s",
                [*args, aggregate_id])
    return aggregates_txn(txn, aggregate_id)[0]


def delete_aggregate_txn(txn: Any, aggregate_id: int) -> None:
    txn.execute("DELETE FROM cyclades_aggregates WHERE id = %s", (aggregate_id,))


def aggregate_host_txn(txn: Any, aggregate_id: int, backend_id: int, add: bool) -> bool:
    """Add (or remove) a backend; whether anything changed."""
    if add:
        txn.execute("""INSERT INTO cyclades_aggregate_hosts (aggregate_id, backend_id)
                       VALUES (%s, %s) ON CONFLICT DO NOTHING""", (aggregate_id, backend_id))
    else:
        txn.execute("""DELETE FROM cyclades_aggregate_hosts
                       WHERE aggregate_id = %s AND backend_id = %s""",
                    (aggregate_id, backend_id))
    changed = txn.rowcount > 0
    if changed:
        txn.execute("UPDATE cyclades_aggregates SET updated = now() WHERE id = %s",
                    (aggregate_id,))
    return bool(changed)


# -- flavors --------------------------------------------------------------

_FLAVOR_COLUMNS = ("id", "cpu", "ram", "disk", "disk_template", "allow_create", "public",
                   "access", "deleted", "name", "flavorid", "swap", "ephemeral",
                   "rxtx_factor", "description", "extra_specs")
_FLAVOR_SELECT = "SELECT " + ", ".join(f"f.{c}" for c in _FLAVOR_COLUMNS) \
    + " FROM cyclades_flavors f"


def _flavor(row: Any) -> Flavor:
    values = dict(zip(_FLAVOR_COLUMNS, row, strict=True))
    values["access"] = tuple(values["access"] or ())
    values["label"] = values.pop("name")
    values["nova_id"] = values.pop("flavorid")
    values["extra_specs"] = dict(values["extra_specs"] or {})
    return Flavor(**values)


def _give_flavorid_txn(txn: Any, flavor_id: int) -> None:
    """A new unnamed flavor's Nova id: its serial id, or a UUID when an
    administrator's flavor took that id already."""
    txn.execute("SELECT 1 FROM cyclades_flavors WHERE flavorid = %s AND NOT deleted",
                (str(flavor_id),))
    given = str(flavor_id) if txn.fetchone() is None else str(uuid.uuid4())
    txn.execute("UPDATE cyclades_flavors SET flavorid = %s WHERE id = %s", (given, flavor_id))


def create_flavor_txn(txn: Any, cpu: int, ram: int, disk: int, disk_template: str, *,
                      allow_create: bool = True, public: bool = True,
                      access: Iterable[str] = ()) -> tuple[Flavor, bool]:
    """Create an unnamed (Synnefo) flavor, or undelete and return the
    existing one with the same (cpu, ram, disk, template); the flag says
    whether it is new."""
    txn.execute(
        """INSERT INTO cyclades_flavors (cpu, ram, disk, disk_template, allow_create,
               public, access) VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (cpu, ram, disk, disk_template) WHERE name IS NULL
           DO NOTHING RETURNING id""",
        (cpu, ram, disk, disk_template, allow_create, public, list(access)))
    row = txn.fetchone()
    if row is None:
        txn.execute(
            """UPDATE cyclades_flavors SET deleted = false WHERE cpu = %s AND ram = %s
               AND disk = %s AND disk_template = %s AND name IS NULL RETURNING id""",
            (cpu, ram, disk, disk_template))
        flavor = flavor_txn(txn, txn.fetchone()[0])
        assert flavor is not None
        return flavor, False
    _give_flavorid_txn(txn, row[0])
    flavor = flavor_txn(txn, row[0])
    assert flavor is not None
    return flavor, True


def create_named_flavor_txn(txn: Any, name: str, flavorid: str | None, cpu: int, ram: int,
                            disk: int, disk_template: str, *, swap: int = 0,
                            ephemeral: int = 0, rxtx_factor: float = 1.0,
                            public: bool = True,
                            description: str | None = None) -> Flavor | None:
    """Create a named flavor (Nova's administrators'); ``flavorid``
    ``None``: a UUID.  ``None`` when a flavor not deleted has that name or
    that flavorid."""
    given = flavorid if flavorid is not None else str(uuid.uuid4())
    txn.execute(
        """SELECT 1 FROM cyclades_flavors WHERE NOT deleted AND (name = %s OR flavorid = %s)""",
        (name, given))
    if txn.fetchone() is not None:
        return None
    txn.execute(
        """INSERT INTO cyclades_flavors (cpu, ram, disk, disk_template, public, name,
               flavorid, swap, ephemeral, rxtx_factor, description)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (cpu, ram, disk, disk_template, public, name, given, swap, ephemeral, rxtx_factor,
         description))
    return flavor_txn(txn, txn.fetchone()[0])


def flavor_txn(txn: Any, flavor_id: int) -> Flavor | None:
    prepared.execute(txn, f"{_FLAVOR_SELECT} WHERE f.id = %s", (flavor_id,))
    row = txn.fetchone()
    return _flavor(row) if row else None


def flavor_by_flavorid_txn(txn: Any, flavorid: str) -> Flavor | None:
    """The flavor not deleted whose Nova id is ``flavorid``."""
    txn.execute(f"{_FLAVOR_SELECT} WHERE f.flavorid = %s AND NOT f.deleted", (flavorid,))
    row = txn.fetchone()
    return _flavor(row) if row else None


def flavors_txn(txn: Any, include_deleted: bool = False) -> list[Flavor]:
    where = "" if include_deleted else " WHERE NOT f.deleted"
    txn.execute(f"{_FLAVOR_SELECT}{where} ORDER BY f.id")
    return [_flavor(r) for r in txn.fetchall()]


_FLAVOR_SETTINGS = frozenset({"allow_create", "public", "access", "deleted", "description",
                              "extra_specs", "disk_template"})


def update_flavor_txn(txn: Any, flavor_id: int, **settings: Any) -> Flavor | None:
    """Change allow_create, public, access, deleted, description,
    extra_specs (the whole mapping) or disk_template."""
    _check(settings, _FLAVOR_SETTINGS)
    if settings:
        values = [Json(v) if k == "extra_specs" else _list(v) for k, v in settings.items()]
        txn.execute(
            f"UPDATE cyclades_flavors SET {', '.join(f'{k} = %s' for k in settings)}"
            " WHERE id = %s", [*values, flavor_id])
    return flavor_txn(txn, flavor_id)


# -- servers --------------------------------------------------------------

_SERVER_COLUMNS = (
    "id", "userid", "project", "name", "image_id", "backend_id", "operstate", "deleted",
    "suspended", "rescue", "shared_to_project", "action", "task", "task_job_id", "serial",
    "backendjobid", "backendopcode", "backendjobstatus", "backendlogmsg", "backendtime",
    "buildpercentage", "image", "metadata", "tags", "key_names", "nics", "disks",
    "access_ipv4", "access_ipv6", "locked_by", "server_group", "description", "created",
    "updated")
_SERVER_SELECT = (
    "SELECT " + ", ".join(f"s.{c}" for c in _SERVER_COLUMNS) + ", "
    + ", ".join(f"f.{c}" for c in _FLAVOR_COLUMNS)
    + " FROM cyclades_servers s JOIN cyclades_flavors f ON f.id = s.flavor_id")
# What update_server_txn may change.
SERVER_FIELDS = frozenset(_SERVER_COLUMNS) - {"id", "userid", "created", "updated"} \
    | {"flavor_id"}
_JSON_FIELDS = frozenset({"image", "metadata", "nics", "disks"})


def _server(row: Any) -> Server:
    n = len(_SERVER_COLUMNS)
    values = dict(zip(_SERVER_COLUMNS, row[:n], strict=True))
    values["flavor"] = _flavor(row[n:])
    values["tags"] = tuple(values["tags"] or ())
    values["key_names"] = tuple(values["key_names"] or ())
    values["nics"] = tuple(values["nics"] or ())
    values["disks"] = tuple(values["disks"] or ())
    values["backendtime"] = _finite(values["backendtime"])
    return Server(**values)


def insert_server_txn(txn: Any, userid: str, project: str, name: str, flavor_id: int,
                      image_id: str, **fields: Any) -> Server:
    """Insert a server in BUILD; ``fields`` are further ``SERVER_FIELDS``."""
    _check(fields, SERVER_FIELDS)
    names = ["userid", "project", "name", "flavor_id", "image_id", *fields]
    values = [userid, project, name, flavor_id, image_id,
              *(_value(k, v) for k, v in fields.items())]
    txn.execute(
        f"INSERT INTO cyclades_servers ({', '.join(names)})"
        f" VALUES ({', '.join(['%s'] * len(names))}) RETURNING id", values)
    # New: no port or volume is attached to it yet.
    server = server_row_txn(txn, txn.fetchone()[0])
    assert server is not None
    return server


def server_txn(txn: Any, server_id: int, for_update: bool = False) -> Server | None:
    """One server (deleted ones too), optionally locking its row."""
    found = server_row_txn(txn, server_id, for_update)
    return with_attachments_txn(txn, [found])[0] if found is not None else None


def server_row_txn(txn: Any, server_id: int, for_update: bool = False) -> Server | None:
    """``server_txn`` without its ports and volumes (one statement; the
    server's ``ports`` and ``volumes`` are empty)."""
    lock = " FOR UPDATE OF s" if for_update else ""
    prepared.execute(txn, f"{_SERVER_SELECT} WHERE s.id = %s{lock}", (server_id,))
    row = txn.fetchone()
    return _server(row) if row else None


def with_attachments_txn(txn: Any, servers: list[Server]) -> list[Server]:
    """The servers with their live ports (``Server.ports``, the network
    service's ``Port`` values) and attached volumes (``Server.volumes``,
    the volume service's ``Volume`` values)."""
    if not servers:
        return servers
    ids = [s.id for s in servers]
    by_server: dict[int, list[Any]] = {}
    for port in network_store.ports_txn(txn, device_ids=ids):
        if port.state != "DELETING" and port.device_id is not None:
            by_server.setdefault(port.device_id, []).append(port)
    volumes: dict[int, list[Any]] = {}
    for volume in volume_store.attached_txn(txn, ids):
        assert volume.server_id is not None
        volumes.setdefault(volume.server_id, []).append(volume)
    return [attrs.evolve(s, ports=tuple(by_server.get(s.id, ())),
                         volumes=tuple(volumes.get(s.id, ())))
            if s.id in by_server or s.id in volumes else s
            for s in servers]


def servers_txn(txn: Any, *, userid: str | None = None, project: str | None = None,
                since: datetime.datetime | None = None, include_deleted: bool = False,
                backend_id: int | None = None, ids: Iterable[int] | None = None,
                before: datetime.datetime | None = None) -> list[Server]:
    """Servers by id.  ``userid`` with ``project``: the user's own plus those
    shared to ``project``... (callers pass what they see).  ``since``:
    updated after that time, ``before``: at or before it, deleted ones
    included with either."""
    where: list[str] = []
    args: list[Any] = []
    if userid is not None:
        where.append("s.userid = %s")
        args.append(userid)
    if project is not None:
        where.append("s.project = %s")
        args.append(project)
    if backend_id is not None:
        where.append("s.backend_id = %s")
        args.append(backend_id)
    if ids is not None:
        where.append("s.id = ANY(%s)")
        args.append(list(ids))
    if since is not None:
        where.append("s.updated > %s")
        args.append(since)
    if before is not None:
        where.append("s.updated <= %s")
        args.append(before)
    if since is None and before is None and not include_deleted:
        where.append("NOT s.deleted")
    sql = _SERVER_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.id"
    txn.execute(sql, args)
    return with_attachments_txn(txn, [_server(r) for r in txn.fetchall()])


def servers_during_txn(txn: Any, start: datetime.datetime, end: datetime.datetime,
                       project: str | None = None) -> list[Server]:
    """The servers (of ``project``; ``None``: all) that existed at some
    time in ``[start, end]``: created by ``end``, and alive or deleted
    after ``start`` (a deleted server's last update is its deletion)."""
    where = ["s.created <= %s", "(NOT s.deleted OR s.updated >= %s)"]
    args: list[Any] = [end, start]
    if project is not None:
        where.append("s.project = %s")
        args.append(project)
    txn.execute(_SERVER_SELECT + " WHERE " + " AND ".join(where) + " ORDER BY s.id", args)
    return [_server(r) for r in txn.fetchall()]


def update_server_txn(txn: Any, server_id: int, **fields: Any) -> Server | None:
    """Set ``SERVER_FIELDS`` (and ``updated = now()``); the new row."""
    set_server_txn(txn, server_id, **fields)
    return server_txn(txn, server_id)


def set_server_txn(txn: Any, server_id: int, **fields: Any) -> None:
    """``update_server_txn`` without reading the row back."""
    _check(fields, SERVER_FIELDS)
    assignments = ", ".join([*(f"{k} = %s" for k in fields), "updated = now()"])
    txn.execute(f"UPDATE cyclades_servers SET {assignments} WHERE id = %s",
                [*(_value(k, v) for k, v in fields.items()), server_id])


def usage_txn(txn: Any) -> dict[tuple[str, str], dict[str, int]]:
    """What live servers hold, by (user, project): vm count, cpu and ram
    (MiB) in total and of running ones, disk (GiB) — for reconciling quota."""
    txn.execute(
        """SELECT s.userid, s.project, count(*), sum(f.cpu), sum(f.ram), sum(f.disk),
                  sum(f.cpu) FILTER (WHERE s.operstate IN ('STARTED', 'BUILD', 'ERROR')),
                  sum(f.ram) FILTER (WHERE s.operstate IN ('STARTED', 'BUILD', 'ERROR'))
           FROM cyclades_servers s JOIN cyclades_flavors f ON f.id = s.flavor_id
           WHERE NOT s.deleted GROUP BY s.userid, s.project""")
    return {(r[0], r[1]): {"vm": r[2], "total_cpu": r[3] or 0, "total_ram": r[4] or 0,
                           "disk": r[5] or 0, "cpu": r[6] or 0, "ram": r[7] or 0}
            for r in txn.fetchall()}


# -- server groups --------------------------------------------------------

_GROUP_SELECT = (
    "SELECT g.id, g.userid, g.project, g.name, g.policy, g.created,"
    " coalesce(array_agg(s.id ORDER BY s.id) FILTER (WHERE s.id IS NOT NULL), '{}'),"
    " g.rules"
    " FROM cyclades_server_groups g LEFT JOIN cyclades_servers s"
    " ON s.server_group = g.id AND NOT s.deleted")


def _group(row: Any) -> ServerGroup:
    return ServerGroup(id=row[0], userid=row[1], project=row[2], name=row[3], policy=row[4],
                       created=row[5], members=tuple(row[6]), rules=dict(row[7] or {}))


def create_group_txn(txn: Any, userid: str, project: str, name: str,
                     policy: str, rules: Mapping[str, int] | None = None) -> ServerGroup:
    """Insert a server group (a new UUID) with its policy's ``rules``."""
    group_id = str(uuid.uuid4())
    txn.execute("INSERT INTO cyclades_server_groups (id, userid, project, name, policy, rules)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (group_id, userid, project, name, policy, Json(dict(rules or {}))))
    found = group_txn(txn, group_id)
    assert found is not None
    return found


def group_txn(txn: Any, group_id: str, for_update: bool = False) -> ServerGroup | None:
    """One server group with its live members; ``for_update`` locks its
    row (creates into it are serialised by that lock)."""
    if for_update:
        txn.execute("SELECT 1 FROM cyclades_server_groups WHERE id = %s FOR UPDATE",
                    (group_id,))
        if txn.fetchone() is None:
            return None
    txn.execute(_GROUP_SELECT + " WHERE g.id = %s GROUP BY g.id", (group_id,))
    row = txn.fetchone()
    return _group(row) if row else None


def groups_txn(txn: Any, *, projects: Iterable[str] | None = None,
               userid: str | None = None) -> list[ServerGroup]:
    """Server groups of ``projects`` or made by ``userid`` (both None:
    all), oldest first."""
    where: list[str] = []
    args: list[Any] = []
    if projects is not None:
        where.append("g.project = ANY(%s)")
        args.append(list(projects))
    if userid is not None:
        where.append("g.userid = %s")
        args.append(userid)
    sql = _GROUP_SELECT + (" WHERE " + " OR ".join(where) if where else "")
    txn.execute(sql + " GROUP BY g.id ORDER BY g.created, g.id", args)
    return [_group(r) for r in txn.fetchall()]


def lock_groups_txn(txn: Any, project: str) -> None:
    """Until the transaction ends, be the only one creating groups in
    ``project`` (the count of its groups stays true)."""
    txn.execute("SELECT pg_advisory_xact_lock(hashtext('cyclades.groups:' || %s))",
                (project,))


def count_groups_txn(txn: Any, project: str) -> int:
    txn.execute("SELECT count(*) FROM cyclades_server_groups WHERE project = %s", (project,))
    count: int = txn.fetchone()[0]
    return count


def delete_group_txn(txn: Any, group_id: str) -> bool:
    """Delete a group (its servers stay, in no group); whether it was there."""
    txn.execute("DELETE FROM cyclades_server_groups WHERE id = %s", (group_id,))
    deleted: bool = txn.rowcount > 0
    return deleted


def member_backends_txn(txn: Any, group_id: str) -> dict[int, int | None]:
    """The live members of a group and their backends."""
    txn.execute("SELECT id, backend_id FROM cyclades_servers"
                " WHERE server_group = %s AND NOT deleted", (group_id,))
    return {r[0]: r[1] for r in txn.fetchall()}


# -- instance actions -----------------------------------------------------

def add_action_txn(txn: Any, server_id: int, request_id: str, action: str, userid: str,
                   project: str, start_time: datetime.datetime,
                   job_id: int | None) -> None:
    """Record what request ``request_id`` did to a server (a request acts
    once on a server: a second record of it is ignored)."""
    prepared.execute(txn,
        """INSERT INTO cyclades_instance_actions (server_id, request_id, action, userid,
               project, job_id, start_time) VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (server_id, request_id) DO NOTHING""",
        (server_id, request_id, action, userid, project, job_id, start_time))


def actions_txn(txn: Any, server_id: int,
                request_id: str | None = None) -> list[InstanceAction]:
    """A server's actions, newest first (``request_id``: that one only),
    each with the events of its job and the compute host (the server's
    backend) they ran on."""
    sql = ("SELECT a.server_id, a.request_id, a.action, a.userid, a.project, a.start_time,"
           " a.job_id, b.clustername FROM cyclades_instance_actions a"
           " JOIN cyclades_servers s ON s.id = a.server_id"
           " LEFT JOIN cyclades_backends b ON b.id = s.backend_id WHERE a.server_id = %s")
    args: list[Any] = [server_id]
    if request_id is not None:
        sql += " AND a.request_id = %s"
        args.append(request_id)
    txn.execute(sql + " ORDER BY a.start_time DESC, a.request_id", args)
    actions = [InstanceAction(server_id=r[0], request_id=r[1], action=r[2], userid=r[3],
                              project=r[4], start_time=r[5], job_id=r[6], host=r[7])
               for r in txn.fetchall()]
    jobs = [a.job_id for a in actions if a.job_id is not None]
    if not jobs:
        return actions
    txn.execute("SELECT job_id, opcode, start_time, finish_time, result"
                " FROM cyclades_job_events WHERE server_id = %s AND job_id = ANY(%s)"
                " ORDER BY start_time, opcode", (server_id, jobs))
    events: dict[int, list[JobEvent]] = {}
    for r in txn.fetchall():
        events.setdefault(r[0], []).append(JobEvent(*r))
    return [attrs.evolve(a, events=tuple(events.get(a.job_id, ())))
            if a.job_id is not None else a for a in actions]


def job_event_txn(txn: Any, server_id: int, job_id: int, opcode: str,
                  when: datetime.datetime, result: str | None,
                  started: datetime.datetime | None = None) -> None:
    """Note an opcode of a server's job: started at ``when``, or ended
    then with ``result`` ("Success"/"Error"; None: still going).  A first
    note says when it started (``started``, else ``when``)."""
    txn.execute(
        """INSERT INTO cyclades_job_events (server_id, job_id, opcode, start_time,
               finish_time, result) VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (server_id, job_id, opcode) DO UPDATE
           SET finish_time = EXCLUDED.finish_time, result = EXCLUDED.result
           WHERE cyclades_job_events.result IS NULL""",
        (server_id, job_id, opcode, started or when, when if result else None, result))


# -- migrations -----------------------------------------------------------

def add_migration_txn(txn: Any, server_id: int, job_id: int | None, kind: str,
                      source_compute: str, source_node: str | None, dest_node: str | None,
                      flavor_id: int) -> None:
    txn.execute(
        """INSERT INTO cyclades_migrations (server_id, job_id, kind, source_compute,
               source_node, dest_node, flavor_id) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (server_id, job_id, kind, source_compute, source_node, dest_node, flavor_id))


def migrations_txn(txn: Any, server_id: int | None = None) -> list[Migration]:
    """Migrations (of one server), newest first, with their status from
    their job's events: cancelled when aborted while queued, error when an
    opcode failed, completed when all ended, running when one began, else
    queued."""
    sql = """SELECT m.id, m.server_id, m.job_id, m.kind, m.source_compute, m.source_node,
                    m.dest_node, m.flavor_id, m.created,
                    CASE WHEN m.cancelled THEN 'cancelled'
                         WHEN bool_or(e.result = 'Error') THEN 'error'
                         WHEN count(e.opcode) > 0 AND bool_and(e.result IS NOT NULL)
                              THEN 'completed'
                         WHEN count(e.opcode) > 0 THEN 'running'
                         ELSE 'queued' END,
                    max(e.finish_time),
                    greatest(max(e.start_time), max(e.finish_time)), m.uuid
             FROM cyclades_migrations m LEFT JOIN cyclades_job_events e
               ON e.server_id = m.server_id AND e.job_id = m.job_id"""
    args: list[Any] = []
    if server_id is not None:
        sql += " WHERE m.server_id = %s"
        args.append(server_id)
    txn.execute(sql + " GROUP BY m.id ORDER BY m.id DESC", args)
    return [Migration(id=r[0], server_id=r[1], job_id=r[2], kind=r[3], source_compute=r[4],
                      source_node=r[5], dest_node=r[6], flavor_id=r[7], created=r[8],
                      status=r[9], finished=r[10], updated=r[11], uuid=str(r[12]))
            for r in txn.fetchall()]


def cancel_migration_txn(txn: Any, migration_id: int) -> None:
    """Note that a migration was aborted (its queued job cancelled)."""
    txn.execute("UPDATE cyclades_migrations SET cancelled = true WHERE id = %s",
                (migration_id,))


# -- diagnostics ----------------------------------------------------------

def add_diagnostic_txn(txn: Any, server_id: int, level: str, source: str, message: str,
                       details: str | None = None,
                       source_date: datetime.datetime | None = None) -> None:
    txn.execute(
        """INSERT INTO cyclades_diagnostics (server_id, level, source, source_date,
               message, details) VALUES (%s, %s, %s, %s, %s, %s)""",
        (server_id, level, source, source_date, message, details))


def diagnostics_txn(txn: Any, server_id: int) -> list[dict[str, Any]]:
    """A server's diagnostics, newest first, as the API shows them."""
    txn.execute(
        """SELECT level, created, source, source_date, message, details
           FROM cyclades_diagnostics WHERE server_id = %s ORDER BY id DESC""", (server_id,))
    return [{"level": r[0], "created": r[1], "source": r[2], "source_date": r[3],
             "message": r[4], "details": r[5]} for r in txn.fetchall()]


# -- keypairs -------------------------------------------------------------

def add_keypair_txn(txn: Any, userid: str, name: str, public_key: str,
                    fingerprint: str, key_type: str = "ssh") -> bool:
    """Store a keypair; False when the user already has one by that name."""
    txn.execute(
        """INSERT INTO cyclades_keypairs (userid, name, public_key, fingerprint, type)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING name""",
        (userid, name, public_key, fingerprint, key_type))
    return txn.fetchone() is not None


def keypairs_txn(txn: Any, userid: str, names: Iterable[str] | None = None
                 ) -> list[dict[str, Any]]:
    """The user's keypairs by name (only ``names`` when given)."""
    sql = """SELECT name, public_key, fingerprint, created, id, type FROM cyclades_keypairs
             WHERE userid = %s"""
    args: list[Any] = [userid]
    if names is not None:
        sql += " AND name = ANY(%s)"
        args.append(list(names))
    txn.execute(sql + " ORDER BY name", args)
    return [{"name": r[0], "public_key": r[1], "fingerprint": r[2], "created": r[3],
             "id": r[4], "type": r[5]} for r in txn.fetchall()]


def delete_keypair_txn(txn: Any, userid: str, name: str) -> bool:
    txn.execute("DELETE FROM cyclades_keypairs WHERE userid = %s AND name = %s",
                (userid, name))
    return bool(txn.rowcount)


# -- build parameters and passwords ----------------------------------------

def put_params_txn(txn: Any, key: str, server_id: int, params: Mapping[str, Any]) -> None:
    prepared.execute(txn, "INSERT INTO cyclades_server_params (key, server_id, params)"
                          " VALUES (%s, %s, %s)", (key, server_id, Json(dict(params))))


def take_params_txn(txn: Any, key: str) -> dict[str, Any] | None:
    """The parameters under ``key``, deleted as they are read (one use)."""
    txn.execute("DELETE FROM cyclades_server_params WHERE key = %s RETURNING params", (key,))
    row = txn.fetchone()
    return dict(row[0]) if row else None


def put_progress_key_txn(txn: Any, key: str, server_id: int) -> None:
    """A new key the build of ``server_id`` reports its progress with
    (its earlier builds' keys go)."""
    prepared.execute(txn, "DELETE FROM cyclades_progress_keys WHERE server_id = %s", (server_id,))
    prepared.execute(txn, "INSERT INTO cyclades_progress_keys (key, server_id) VALUES (%s, %s)",
                     (key, server_id))


def use_progress_key_txn(txn: Any, key: str, most: int) -> int | None:
    """The server a progress key is for, counting one more report; None
    for an unknown key or one that made ``most`` reports already."""
    txn.execute("UPDATE cyclades_progress_keys SET reports = reports + 1"
                " WHERE key = %s AND reports < %s RETURNING server_id", (key, most))
    row = txn.fetchone()
    return int(row[0]) if row else None


def drop_params_txn(txn: Any, server_id: int) -> None:
    """Drop whatever build parameters of a server are left (its build
    ended, or it is being deleted): they hold its admin password and are
    served without a token."""
    txn.execute("DELETE FROM cyclades_server_params WHERE server_id = %s", (server_id,))


def put_password_txn(txn: Any, server_id: int, password: str,
                     expires: datetime.datetime) -> None:
    prepared.execute(txn,
        """INSERT INTO cyclades_server_passwords (server_id, password, expires)
           VALUES (%s, %s, %s) ON CONFLICT (server_id) DO UPDATE
           SET password = EXCLUDED.password, expires = EXCLUDED.expires""",
        (server_id, password, expires))


def password_txn(txn: Any, server_id: int) -> str | None:
    """The cached admin password while it has not expired (expired ones
    are deleted)."""
    txn.execute("DELETE FROM cyclades_server_passwords WHERE expires < now()")
    txn.execute("SELECT password FROM cyclades_server_passwords WHERE server_id = %s",
                (server_id,))
    row = txn.fetchone()
    return row[0] if row else None


def drop_password_txn(txn: Any, server_id: int) -> None:
    """Forget the cached admin password of a server (it is being deleted)."""
    txn.execute("DELETE FROM cyclades_server_passwords WHERE server_id = %s", (server_id,))


# -- helpers --------------------------------------------------------------

def _finite(when: datetime.datetime | None) -> datetime.datetime | None:
    """None for PostgreSQL's '-infinity' (psycopg2 gives datetime.min)."""
    return None if when is None or when.year < 2 else when


def _check(fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not settable: {', '.join(sorted(unknown))}")


def _list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _value(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return Json(list(value) if isinstance(value, tuple) else value)
    return _list(value)
