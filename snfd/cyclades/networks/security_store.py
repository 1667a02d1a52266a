"""The SQL of security groups and their rules (cyclades migration 0008),
and of the ports in them (``cyclades_ports.security_groups``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from snfd.cyclades.networks import store
from snfd.cyclades.networks.model import Port, SecurityGroup, SecurityRule

_GROUP = ("id", "project", "userid", "name", "description", "is_default", "tags",
          "revision", "created", "updated")
_RULE = ("id", "group_id", "project", "direction", "ethertype", "protocol", "port_range_min",
         "port_range_max", "remote_ip_prefix", "remote_group_id", "description", "revision",
         "created", "updated")
GROUP_SETTINGS = frozenset({"name", "description", "tags"})


def _rules(rows: list[Any]) -> list[SecurityRule]:
    out = []
    for row in rows:
        out.append(SecurityRule(**dict(zip(_RULE, row, strict=True))))
    return out


def _groups(txn: Any, rows: list[Any]) -> list[SecurityGroup]:
    groups = [dict(zip(_GROUP, row, strict=True)) for row in rows]
    by_group: dict[str, list[SecurityRule]] = {}
    if groups:
        for rule in rules_txn(txn, group_ids=[g["id"] for g in groups]):
            by_group.setdefault(rule.group_id, []).append(rule)
    return [SecurityGroup(**{**g, "tags": tuple(g["tags"] or ())},
                          rules=tuple(by_group.get(g["id"], ()))) for g in groups]


def group_txn(txn: Any, group_id: str, for_update: bool = False) -> SecurityGroup | None:
    txn.execute(f"SELECT {', '.join(_GROUP)} FROM cyclades_security_groups WHERE id = %s"
                + (" FOR UPDATE" if for_update else ""), (group_id,))
    found = _groups(txn, txn.fetchall())
    return found[0] if found else None


def groups_txn(txn: Any, project: str | None = None,
               ids: Iterable[str] | None = None) -> list[SecurityGroup]:
    where, args = _where(project=project, id=ids)
    txn.execute(f"SELECT {', '.join(_GROUP)} FROM cyclades_security_groups{where}"
                " ORDER BY created, id", args)
    return _groups(txn, txn.fetchall())


def default_group_txn(txn: Any, project: str) -> SecurityGroup | None:
    txn.execute("SELECT id FROM cyclades_security_groups WHERE project = %s AND is_default",
                (project,))
    row = txn.fetchone()
    return None if row is None else group_txn(txn, row[0])


def insert_group_txn(txn: Any, group_id: str, project: str, userid: str | None, name: str,
                     description: str = "", is_default: bool = False) -> bool:
    """A new group; False when it is a default one and the project already
    has its default (a concurrent request made it)."""
    txn.execute("INSERT INTO cyclades_security_groups"
                " (id, project, userid, name, description, is_default)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
                (group_id, project, userid, name, description, is_default))
    return txn.fetchone() is not None


def update_group_txn(txn: Any, group_id: str, **fields: Any) -> SecurityGroup | None:
    store._check(fields, GROUP_SETTINGS)
    store._update(txn, "cyclades_security_groups", group_id, fields)
    return group_txn(txn, group_id)


def delete_group_txn(txn: Any, group_id: str) -> None:
    txn.execute("DELETE FROM cyclades_security_groups WHERE id = %s", (group_id,))


def count_groups_txn(txn: Any, project: str) -> int:
    txn.execute("SELECT count(*) FROM cyclades_security_groups WHERE project = %s",
                (project,))
    return int(txn.fetchone()[0])


def rule_txn(txn: Any, rule_id: str) -> SecurityRule | None:
    txn.execute(f"SELECT {', '.join(_RULE)} FROM cyclades_security_group_rules WHERE id = %s",
                (rule_id,))
    found = _rules(txn.fetchall())
    return found[0] if found else None


def rules_txn(txn: Any, *, project: str | None = None,
              group_ids: Iterable[str] | None = None) -> list[SecurityRule]:
    where, args = _where(project=project, group_id=group_ids)
    txn.execute(f"SELECT {', '.join(_RULE)} FROM cyclades_security_group_rules{where}"
                " ORDER BY created, id", args)
    return _rules(txn.fetchall())


def _where(**columns: str | Iterable[str] | None) -> tuple[str, list[Any]]:
    """`` WHERE ...`` for the columns given a value (a string: equal to it;
    an iterable: one of them), and its arguments; ``""`` for none."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in columns.items():
        if value is None:
            continue
        clauses.append(f"{column} = %s" if isinstance(value, str) else f"{column} = ANY(%s)")
        args.append(value if isinstance(value, str) else list(value))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def insert_rule_txn(txn: Any, rule_id: str, group_id: str, project: str,
                    **values: Any) -> SecurityRule:
    names = ["id", "group_id", "project", *values]
    txn.execute(f"INSERT INTO cyclades_security_group_rules ({', '.join(names)})"
                f" VALUES ({', '.join(['%s'] * len(names))})",
                [rule_id, group_id, project, *values.values()])
    found = rule_txn(txn, rule_id)
    assert found is not None
    return found


def delete_rule_txn(txn: Any, rule_id: str) -> None:
    txn.execute("DELETE FROM cyclades_security_group_rules WHERE id = %s", (rule_id,))


def count_rules_txn(txn: Any, project: str) -> int:
    txn.execute("SELECT count(*) FROM cyclades_security_group_rules WHERE project = %s",
                (project,))
    return int(txn.fetchone()[0])


def ports_in_txn(txn: Any, group_ids: Iterable[str]) -> list[Port]:
    """The ports in any of the groups."""
    txn.execute(f"{store._PORT_SELECT} WHERE security_groups && %s::text[] ORDER BY id",
                (list(group_ids),))
    return store._ports(txn, txn.fetchall())


def groups_naming_txn(txn: Any, group_ids: Iterable[str]) -> list[str]:
    """The groups with a rule whose remote is one of ``group_ids``."""
    txn.execute("SELECT DISTINCT group_id FROM cyclades_security_group_rules"
                " WHERE remote_group_id = ANY(%s)", (list(group_ids),))
    return [r[0] for r in txn.fetchall()]
