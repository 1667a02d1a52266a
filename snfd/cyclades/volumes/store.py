"""The volume service's SQL (``schema/0010_volumes.sql``).

Every function takes a transaction and returns values of
``snfd.cyclades.volumes.model``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg2.extras import Json

from snfd.cyclades.volumes.model import Snapshot, Volume, VolumeType

# -- volume types -------------------------------------------------------------

_TYPE = ("id", "name", "disk_template", "description", "deleted")


def _type(row: Any, offset: int = 0) -> VolumeType:
    return VolumeType(**dict(zip(_TYPE, row[offset:offset + len(_TYPE)], strict=True)))


def ensure_types_txn(txn: Any, templates: Iterable[str]) -> None:
    """A volume type, named after it, for each disk template (kept)."""
    for template in sorted(set(templates)):
        txn.execute("INSERT INTO cyclades_volume_types (name, disk_template)"
                    " VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (template, template))


def types_txn(txn: Any) -> list[VolumeType]:
    txn.execute("SELECT " + ", ".join(_TYPE) + " FROM cyclades_volume_types"
                " WHERE NOT deleted ORDER BY id")
    return [_type(r) for r in txn.fetchall()]


def type_txn(txn: Any, ident: int | str) -> VolumeType | None:
    """By id, or by name."""
    if isinstance(ident, int) or str(ident).isdigit():
        txn.execute("SELECT " + ", ".join(_TYPE) + " FROM cyclades_volume_types"
                    " WHERE id = %s", (int(ident),))
    else:
        txn.execute("SELECT " + ", ".join(_TYPE) + " FROM cyclades_volume_types"
                    " WHERE name = %s", (ident,))
    row = txn.fetchone()
    return _type(row) if row else None


# -- volumes --------------------------------------------------------------------

_VOLUME = ("id", "name", "description", "userid", "project", "size", "source",
           "server_id", "device", "delete_on_termination", "bootable", "charged", "status",
           "job_id", "serial", "metadata", "deleted", "created", "updated")
VOLUME_SETTINGS = frozenset({
    "name", "description", "size", "server_id", "device", "delete_on_termination",
    "bootable", "status", "job_id", "serial", "metadata", "deleted", "project", "source",
    "charged"})
_VOLUME_SELECT = ("SELECT " + ", ".join(f"v.{c}" for c in _VOLUME) + ", "
                  + ", ".join(f"t.{c}" for c in _TYPE)
                  + " FROM cyclades_volumes v JOIN cyclades_volume_types t"
                    " ON t.id = v.volume_type_id")


def _volume(row: Any) -> Volume:
    values = dict(zip(_VOLUME, row[:len(_VOLUME)], strict=True))
    values["id"] = str(values["id"])
    values["metadata"] = dict(values["metadata"] or {})
    return Volume(**values, volume_type=_type(row, len(_VOLUME)))


def create_volume_txn(txn: Any, volume_id: str, userid: str, project: str, size: int,
                      volume_type: VolumeType, **fields: Any) -> Volume:
    _check(fields, VOLUME_SETTINGS)
    values = {"id": volume_id, "userid": userid, "project": project, "size": size,
              "volume_type_id": volume_type.id, **fields}
    if "metadata" in values:
        values["metadata"] = Json(dict(values["metadata"]))
    txn.execute(f"INSERT INTO cyclades_volumes ({', '.join(values)})"
                f" VALUES ({', '.join(['%s'] * len(values))})", list(values.values()))
    made = volume_txn(txn, volume_id)
    assert made is not None
    return made


def volume_txn(txn: Any, volume_id: str, for_update: bool = False) -> Volume | None:
    txn.execute(_VOLUME_SELECT + " WHERE v.id::text = %s"
                + (" FOR UPDATE OF v" if for_update else ""), (volume_id,))
    row = txn.fetchone()
    return _volume(row) if row else None


def volumes_txn(txn: Any, *, userid: str | None = None, server_id: int | None = None,
                include_deleted: bool = False) -> list[Volume]:
    where: list[str] = []
    args: list[Any] = []
    if not include_deleted:
        where.append("NOT v.deleted")
    if userid is not None:
        where.append("v.userid = %s")
        args.append(userid)
    if server_id is not None:
        where.append("v.server_id = %s")
        args.append(server_id)
    txn.execute(_VOLUME_SELECT + (" WHERE " + " AND ".join(where) if where else "")
                + " ORDER BY v.created, v.id", args)
    return [_volume(r) for r in txn.fetchall()]


def attached_txn(txn: Any, server_ids: Iterable[int]) -> list[Volume]:
    """The volumes attached to (or being attached to) those servers."""
    txn.execute(_VOLUME_SELECT + " WHERE v.server_id = ANY(%s) AND NOT v.deleted"
                " AND v.status IN ('attaching', 'in-use', 'detaching')"
                " ORDER BY v.server_id, v.bootable DESC, v.created",
                (list(server_ids),))
    return [_volume(r) for r in txn.fetchall()]


def update_volume_txn(txn: Any, volume_id: str, **fields: Any) -> Volume | None:
    _check(fields, VOLUME_SETTINGS)
    if "metadata" in fields:
        fields["metadata"] = Json(dict(fields["metadata"]))
    _update(txn, "cyclades_volumes", volume_id, fields)
    return volume_txn(txn, volume_id)


# -- snapshots ------------------------------------------------------------------

_SNAPSHOT = ("id", "name", "description", "userid", "project", "volume_id", "size",
             "status", "image_id", "metadata", "deleted", "created", "updated")
SNAPSHOT_SETTINGS = frozenset({"name", "description", "status", "image_id", "metadata",
                               "deleted"})
_SNAPSHOT_SELECT = "SELECT " + ", ".join(_SNAPSHOT) + " FROM cyclades_snapshots"


def _snapshot(row: Any) -> Snapshot:
    values = dict(zip(_SNAPSHOT, row, strict=True))
    values["id"] = str(values["id"])
    values["volume_id"] = str(values["volume_id"])
    values["metadata"] = dict(values["metadata"] or {})
    return Snapshot(**values)


def create_snapshot_txn(txn: Any, snapshot_id: str, userid: str, project: str,
                        volume_id: str, size: int, **fields: Any) -> Snapshot:
    _check(fields, SNAPSHOT_SETTINGS)
    values = {"id": snapshot_id, "userid": userid, "project": project,
              "volume_id": volume_id, "size": size, **fields}
    if "metadata" in values:
        values["metadata"] = Json(dict(values["metadata"]))
    txn.execute(f"INSERT INTO cyclades_snapshots ({', '.join(values)})"
                f" VALUES ({', '.join(['%s'] * len(values))})", list(values.values()))
    made = snapshot_txn(txn, snapshot_id)
    assert made is not None
    return made


def snapshot_txn(txn: Any, snapshot_id: str, for_update: bool = False) -> Snapshot | None:
    txn.execute(_SNAPSHOT_SELECT + " WHERE id::text = %s"
                + (" FOR UPDATE" if for_update else ""), (snapshot_id,))
    row = txn.fetchone()
    return _snapshot(row) if row else None


def snapshots_txn(txn: Any, *, userid: str | None = None,
                  volume_id: str | None = None) -> list[Snapshot]:
    where = ["NOT deleted"]
    args: list[Any] = []
    if userid is not None:
        where.append("userid = %s")
        args.append(userid)
    if volume_id is not None:
        where.append("volume_id::text = %s")
        args.append(volume_id)
    txn.execute(_SNAPSHOT_SELECT + " WHERE " + " AND ".join(where)
                + " ORDER BY created, id", args)
    return [_snapshot(r) for r in txn.fetchall()]


def update_snapshot_txn(txn: Any, snapshot_id: str, **fields: Any) -> Snapshot | None:
    _check(fields, SNAPSHOT_SETTINGS)
    if "metadata" in fields:
        fields["metadata"] = Json(dict(fields["metadata"]))
    _update(txn, "cyclades_snapshots", snapshot_id, fields)
    return snapshot_txn(txn, snapshot_id)


# -- helpers ----------------------------------------------------------------------

def _check(fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")


def _update(txn: Any, table: str, row_id: str, fields: Mapping[str, Any]) -> None:
    sets = [f"{k} = %s" for k in fields] + ["revision = revision + 1", "updated = now()"]
    txn.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE id::text = %s",
                [*fields.values(), row_id])
