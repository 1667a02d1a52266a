"""SQL of the quota holder (``*_txn`` functions only): resource definitions,
holdings and the two-phase commission protocol.

A holding is keyed by ``(holder, source, resource)``; a project's own
holding has source ``None`` in the API and ``''`` in the table.  Pending
imports raise ``usage_max`` and pending releases lower ``usage_min``;
accepting moves the other bound, rejecting undoes the first move.  So
``usage_min <= usage_max`` always holds and any pending commission can be
resolved whatever else happened meanwhile.

Every function that changes holdings locks them with ``SELECT ... FOR
UPDATE`` in one fixed order (``_lock_holdings_txn``), so concurrent
commissions never deadlock; resolution locks its commissions first, then
their holdings, and nothing locks in the other order.  Checks run on the
locked values before anything is written, so a refused commission leaves
the database untouched.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

from snfd import errors
from snfd.db import prepared
from snfd.quota import (
    Commission,
    Holding,
    NoCapacityError,
    NoHoldingError,
    NoQuantityError,
    Provision,
    Resolution,
    Resource,
)

Key = tuple[str, str, str]

_RESOURCE_COLUMNS = (
    "name, description, unit, service_type, service_origin, ui_visible,"
    " api_visible, allow_in_projects, base_default, project_default")


# The largest usage a holding can record (PostgreSQL bigint).
MAX_QUANTITY = 2**63 - 1


def _resource(row: Sequence[Any]) -> Resource:
    return Resource(
        name=row[0], description=row[1], unit=row[2], service_type=row[3],
        service_origin=row[4], ui_visible=row[5], api_visible=row[6],
        allow_in_projects=row[7], base_default=row[8], project_default=row[9])


def _holding(row: Sequence[Any]) -> Holding:
    return Holding(holder=row[0], source=row[1] or None, resource=row[2],
                   limit=row[3], usage_min=row[4], usage_max=row[5])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def component_of(service_origin: str) -> str:
    """The component a service belongs to: ``cyclades_compute`` -> ``cyclades``."""
    return service_origin.split("_", 1)[0]


# Resources

def register_resources_txn(txn: Any, resources: Iterable[Resource],
                           component: str | None = None) -> None:
    """Insert new resource definitions and update existing ones.

    Descriptive fields (description, unit, service type and origin,
    visibility, ``allow_in_projects``) follow the component; the defaults
    are taken only when the resource is new, so an administrator's
    ``resource-modify`` survives re-registration.  With ``component``
    given, a resource registered by another component is a ``Conflict``.
    """
    for r in resources:
        if r.ui_visible and not r.api_visible:
            raise errors.BadRequest(f"resource {r.name}: ui_visible requires api_visible")
        if r.base_default < 0 or r.project_default < 0:
            raise errors.BadRequest(f"resource {r.name}: defaults must not be negative")
        if component is not None:
            txn.execute(
                "SELECT service_origin FROM identity_resources WHERE name = %s FOR UPDATE",
                (r.name,))
            row = txn.fetchone()
            if row is not None and component_of(row[0]) != component:
                raise errors.Conflict(
                    f"resource {r.name} belongs to component {component_of(row[0])}")
        txn.execute(
            f"""INSERT INTO identity_resources ({_RESOURCE_COLUMNS})
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET
                    description = EXCLUDED.description,
                    unit = EXCLUDED.unit,
                    service_type = EXCLUDED.service_type,
                    service_origin = EXCLUDED.service_origin,
                    ui_visible = EXCLUDED.ui_visible,
                    api_visible = EXCLUDED.api_visible,
                    allow_in_projects = EXCLUDED.allow_in_projects""",
            (r.name, r.description, r.unit, r.service_type, r.service_origin,
             r.ui_visible, r.api_visible, r.allow_in_projects, r.base_default,
             r.project_default))


def list_resources_txn(txn: Any, names: Iterable[str] | None = None) -> list[Resource]:
    """Every resource definition (or those named), sorted by name."""
    if names is None:
        txn.execute(f"SELECT {_RESOURCE_COLUMNS} FROM identity_resources ORDER BY name")
    else:
        txn.execute(
            f"""SELECT {_RESOURCE_COLUMNS} FROM identity_resources
                WHERE name = ANY(%s) ORDER BY name""", (list(names),))
    return [_resource(row) for row in txn.fetchall()]


def modify_resource_txn(txn: Any, name: str, base_default: int | None = None,
                        project_default: int | None = None,
                        ui_visible: bool | None = None, api_visible: bool | None = None,
                        allow_in_projects: bool | None = None) -> Resource:
    """Change what an administrator controls; ``None`` keeps a value.

    Changing the defaults does not touch existing holdings (the projects
    code decides who gets what).  Raises ``NotFound`` for an unknown name,
    ``BadRequest`` for a negative default.
    """
    for label, value in (("base_default", base_default), ("project_default", project_default)):
        if value is not None and (not _is_int(value) or value < 0):
            raise errors.BadRequest(f"{label} must be a non-negative integer")
    txn.execute(
        f"""UPDATE identity_resources SET
                base_default = COALESCE(%s, base_default),
                project_default = COALESCE(%s, project_default),
                ui_visible = COALESCE(%s, ui_visible),
                api_visible = COALESCE(%s, api_visible),
                allow_in_projects = COALESCE(%s, allow_in_projects)
            WHERE name = %s
            RETURNING {_RESOURCE_COLUMNS}""",
        (base_default, project_default, ui_visible, api_visible, allow_in_projects, name))
    row = txn.fetchone()
    if row is None:
        raise errors.NotFound(f"no resource {name}")
    resource = _resource(row)
    if resource.ui_visible and not resource.api_visible:
        raise errors.BadRequest(f"resource {name}: ui_visible requires api_visible")
    return resource


# Holdings

def set_limit_txn(txn: Any, holder: str, source: str | None, resource: str,
                  limit: int) -> Holding:
    """Create the holding with ``limit`` or change the limit of an existing
    one (usage is kept, and may then exceed the limit)."""
    if not _is_int(limit) or limit < 0:
        raise errors.BadRequest("limit must be a non-negative integer")
    txn.execute("SELECT 1 FROM identity_resources WHERE name = %s", (resource,))
    if txn.fetchone() is None:
        raise errors.NotFound(f"no resource {resource}")
    txn.execute(
        """INSERT INTO identity_holdings (holder, source, resource, "limit")
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (holder, source, resource) DO UPDATE SET "limit" = EXCLUDED."limit"
           RETURNING holder, source, resource, "limit", usage_min, usage_max""",
        (holder, source or "", resource, limit))
    return _holding(txn.fetchone())


def holdings_txn(txn: Any, holders: Iterable[str] | None = None,
                 sources: Iterable[str | None] | None = None,
                 resources: Iterable[str] | None = None) -> list[Holding]:
    """The holdings matching every filter given (``None``: no filter), in
    key order.  A ``None`` among ``sources`` selects project holdings."""
    where, args = [], []
    if holders is not None:
        where.append("holder = ANY(%s)")
        args.append(list(holders))
    if sources is not None:
        where.append("source = ANY(%s)")
        args.append([s or "" for s in sources])
    if resources is not None:
        where.append("resource = ANY(%s)")
        args.append(list(resources))
    txn.execute(
        f"""SELECT holder, source, resource, "limit", usage_min, usage_max
            FROM identity_holdings {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY holder, source, resource""", args)
    return [_holding(row) for row in txn.fetchall()]


def user_holdings_txn(txn: Any, users: Iterable[str] | None = None,
                      projects: Iterable[str] | None = None,
                      resources: Iterable[str] | None = None,
                      ) -> list[tuple[Holding, Holding | None]]:
    """Users' holdings in projects, each with the project's own holding of
    the same resource (``None`` when the project has none).

    ``users`` and ``projects`` are uuids (without the ``user:`` and
    ``project:`` prefixes); ``None`` means all.
    """
    where, args = ["starts_with(u.holder, 'user:')", "starts_with(u.source, 'project:')"], []
    if users is not None:
        where.append("u.holder = ANY(%s)")
        args.append([f"user:{u}" for u in users])
    if projects is not None:
        where.append("u.source = ANY(%s)")
        args.append([f"project:{p}" for p in projects])
    if resources is not None:
        where.append("u.resource = ANY(%s)")
        args.append(list(resources))
    txn.execute(
        f"""SELECT u.holder, u.source, u.resource, u."limit", u.usage_min, u.usage_max,
                   p.holder, p.source, p.resource, p."limit", p.usage_min, p.usage_max
            FROM identity_holdings u
            LEFT JOIN identity_holdings p
              ON p.holder = u.source AND p.source = '' AND p.resource = u.resource
            WHERE {" AND ".join(where)}
            ORDER BY u.holder, u.source, u.resource""", args)
    return [(_holding(row[:6]), _holding(row[6:]) if row[6] is not None else None)
            for row in txn.fetchall()]


def lock_holdings_txn(txn: Any, keys: Iterable[Key]) -> dict[Key, list[int]]:
    """Lock the holdings with these keys, always in the same order, and
    return ``key -> [limit, usage_min, usage_max]`` for those that exist.

    The fixed order (keys compared byte-wise, as Python compares str) is
    what keeps two commissions over the same holdings from deadlocking.
    """
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    prepared.execute(txn,
        """SELECT holder, source, resource, "limit", usage_min, usage_max
           FROM identity_holdings
           WHERE (holder, source, resource) IN (
               SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))
           ORDER BY holder COLLATE "C", source COLLATE "C", resource COLLATE "C"
           FOR UPDATE""",
        ([k[0] for k in wanted], [k[1] for k in wanted], [k[2] for k in wanted]))
    return {(r[0], r[1], r[2]): [r[3], r[4], r[5]] for r in txn.fetchall()}


def _write_holdings_txn(txn: Any, holdings: dict[Key, list[int]]) -> None:
    """Write back the usages of holdings ``lock_holdings_txn`` locked, in
    one statement (the locks are held from the first statement to the
    commit: the fewer round trips, the shorter the wait of the next)."""
    if not holdings:
        return
    keys = sorted(holdings)
    prepared.execute(txn,
        """UPDATE identity_holdings h SET usage_min = v.usage_min, usage_max = v.usage_max
           FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[])
                AS v(holder, source, resource, usage_min, usage_max)
           WHERE h.holder = v.holder AND h.source = v.source AND h.resource = v.resource""",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
         [holdings[k][1] for k in keys], [holdings[k][2] for k in keys]))


_LogRow = tuple[int, str, datetime.datetime, datetime.datetime, str, str, str, int, int, int,
                int, str]


def _log_txn(txn: Any, rows: Sequence[_LogRow]) -> None:
    """Append ``identity_provision_log`` rows, in this order, in one statement."""
    if not rows:
        return
    prepared.execute(txn,
        """INSERT INTO identity_provision_log
               (serial, name, issue_time, log_time, holder, source, resource,
                "limit", usage_min, usage_max, quantity, reason)
           SELECT * FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[],
                                %s::timestamptz[], %s::text[], %s::text[], %s::text[],
                                %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
                                %s::text[])""",
        [list(column) for column in zip(*rows, strict=True)])


def _log_under_new_serial_txn(txn: Any, rows: Sequence[_LogRow]) -> int:
    """A new commission serial, and ``_log_txn`` of ``rows`` under it
    (their own serials ignored), in one statement."""
    if not rows:
        prepared.execute(
            txn, "SELECT nextval(pg_get_serial_sequence('identity_commissions', 'serial'))")
        return int(txn.fetchone()[0])
    prepared.execute(txn,
        """WITH s AS (
               SELECT nextval(pg_get_serial_sequence('identity_commissions', 'serial'))
                      AS serial),
           logged AS (
               INSERT INTO identity_provision_log
                   (serial, name, issue_time, log_time, holder, source, resource,
                    "limit", usage_min, usage_max, quantity, reason)
               SELECT s.serial, u.name, u.issue_time, u.log_time, u.holder, u.source,
                      u.resource, u.lim, u.usage_min, u.usage_max, u.quantity, u.reason
               FROM s, unnest(
                   %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[],
                   %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
                   %s::text[]) WITH ORDINALITY AS u(name, issue_time, log_time, holder,
                       source, resource, lim, usage_min, usage_max, quantity, reason, i)
               ORDER BY u.i)
           SELECT serial FROM s""",
        [list(column) for column in zip(*rows, strict=True)][1:])
    return int(txn.fetchone()[0])


# Commissions

def _provision(key: Key, quantity: int) -> Provision:
    return Provision(key[0], key[1] or None, key[2], quantity)


def _summed(provisions: Iterable[Provision]) -> dict[Key, int]:
    summed: dict[Key, int] = {}
    for p in provisions:
        if not _is_int(p.quantity):
            raise errors.BadRequest(f"malformed provision {p.as_json()}: quantity")
        summed[p.key] = summed.get(p.key, 0) + p.quantity
    return summed


def _take_txn(txn: Any, summed: dict[Key, int], force: bool) -> dict[Key, list[int]]:
    """Lock the holdings of ``summed`` and check every provision (see
    ``issue_txn``); return them with imports added to ``usage_max`` and
    releases taken from ``usage_min``, not yet written."""
    holdings = lock_holdings_txn(txn, summed)
    for key, quantity in summed.items():
        holding = holdings.get(key)
        provision = _provision(key, quantity)
        if holding is None:
            raise NoHoldingError(
                f"{key[0]} has no holding of {key[2]} in {key[1] or 'its own quota'}",
                provision)
        limit, usage_min, usage_max = holding
        if quantity >= 0:
            if usage_max + quantity > MAX_QUANTITY:
                # Even forced: the column would overflow (a 500 otherwise).
                raise NoCapacityError(
                    f"{key[0]} cannot hold {quantity} more {key[2]}: the total would"
                    f" exceed {MAX_QUANTITY}", provision, limit=limit, usage=usage_max)
            if not force and usage_max + quantity > limit:
                raise NoCapacityError(
                    f"{key[0]} lacks capacity for {quantity} more {key[2]}"
                    f" (limit {limit}, usage {usage_max})",
                    provision, limit=limit, usage=usage_max)
            holding[2] = usage_max + quantity
        else:
            if usage_min + quantity < 0:
                raise NoQuantityError(
                    f"{key[0]} cannot release {-quantity} {key[2]}: only"
                    f" {usage_min} held", provision, limit=limit, usage=usage_min)
            holding[1] = usage_min + quantity
    return holdings


def issue_txn(txn: Any, clientkey: str, provisions: Iterable[Provision], name: str,
              force: bool, now: datetime.datetime, auto_accept: bool = False) -> int:
    """Issue one commission, all or nothing; return its serial.

    Provisions with the same key are summed first.  An import (sum >= 0)
    raises ``usage_max`` and, unless ``force``, fails with
    ``NoCapacityError`` if that exceeds the limit; a release lowers
    ``usage_min`` and fails with ``NoQuantityError`` below zero even when
    forced; a missing holding is ``NoHoldingError``.  The errors carry the
    summed provision, the limit, and as usage ``usage_max`` (capacity) or
    ``usage_min`` (quantity).  Every check runs before the first write.
    ``auto_accept`` accepts the commission in the same transaction (its
    serial is then already resolved).
    """
    summed = _summed(provisions)
    holdings = _take_txn(txn, summed, force)
    _write_holdings_txn(txn, holdings)
    prepared.execute(txn,
        """INSERT INTO identity_commissions (clientkey, name, issue_time)
           VALUES (%s, %s, %s) RETURNING serial""", (clientkey, name, now))
    serial: int = txn.fetchone()[0]
    if summed:
        keys = list(summed)
        prepared.execute(txn,
            """INSERT INTO identity_provisions (serial, holder, source, resource, quantity)
               SELECT %s::bigint, * FROM unnest(%s::text[], %s::text[], %s::text[],
                                                %s::bigint[])""",
            (serial, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
             [summed[k] for k in keys]))
    if auto_accept:
        resolve_txn(txn, clientkey, [serial], [], now)
    return serial


def charge_txn(txn: Any, clientkey: str, provisions: Iterable[Provision], name: str,
               force: bool, now: datetime.datetime) -> int | None:
    """Issue and accept one commission in the caller's transaction, in as
    few statements as that takes: the checks and errors of ``issue_txn``,
    then both ``usage_min`` and ``usage_max`` move at once and the
    provision log gets its ``ACCEPT:<name>`` rows under a fresh serial,
    which is returned (``None`` when every quantity sums to zero: nothing
    is logged)."""
    summed = {k: q for k, q in _summed(provisions).items() if q}
    if not summed:
        return None
    holdings = _take_txn(txn, summed, force)
    for key, quantity in summed.items():
        holding = holdings[key]
        if quantity >= 0:
            holding[1] += quantity
        else:
            holding[2] += quantity
    _write_holdings_txn(txn, holdings)
    rows: list[_LogRow] = [
        (0, name, now, now, key[0], key[1], key[2], holdings[key][0], holdings[key][1],
         holdings[key][2], quantity, "ACCEPT:" + name) for key, quantity in sorted(summed.items())]
    return _log_under_new_serial_txn(txn, rows)


def resolve_txn(txn: Any, clientkey: str, accept: Iterable[int], reject: Iterable[int],
                now: datetime.datetime) -> Resolution:
    """Accept and reject pending commissions of ``clientkey``.

    Accepting an import raises ``usage_min``, a release lowers
    ``usage_max``; rejecting reverts the issue.  Each resolved commission
    is deleted and leaves one ``identity_provision_log`` row per provision
    (reason ``ACCEPT:<name>`` or ``REJECT:<name>``, holding values after
    the change).  A serial in both lists fails with ``BadRequest``, one
    that is not a pending commission of this client with ``NotFound``;
    the others are resolved regardless.  A provision whose holding is gone
    (its user or project was deleted meanwhile) changes nothing.
    """
    accept_list = list(dict.fromkeys(accept))
    reject_list = list(dict.fromkeys(reject))
    for s in accept_list + reject_list:
        if not _is_int(s):
            raise errors.BadRequest("serials must be integers")
    both = set(accept_list) & set(reject_list)
    wanted = {s: True for s in accept_list if s not in both}
    wanted.update((s, False) for s in reject_list if s not in both)

    found: dict[int, tuple[str, datetime.datetime]] = {}
    if wanted:
        prepared.execute(txn,
            """SELECT serial, name, issue_time FROM identity_commissions
               WHERE clientkey = %s AND serial = ANY(%s)
               ORDER BY serial FOR UPDATE""", (clientkey, sorted(wanted)))
        found = {row[0]: (row[1], row[2]) for row in txn.fetchall()}
    provisions: dict[int, list[tuple[Key, int]]] = {s: [] for s in found}
    if found:
        prepared.execute(txn,
            """SELECT serial, holder, source, resource, quantity FROM identity_provisions
               WHERE serial = ANY(%s) ORDER BY serial, holder, source, resource""",
            (sorted(found),))
        for serial, holder, source, resource, quantity in txn.fetchall():
            provisions[serial].append(((holder, source, resource), quantity))
    holdings = lock_holdings_txn(
        txn, (key for items in provisions.values() for key, _ in items))

    logs: list[_LogRow] = []
    for serial in sorted(found):
        do_accept = wanted[serial]
        name, issue_time = found[serial]
        reason = ("ACCEPT:" if do_accept else "REJECT:") + name
        for key, quantity in provisions[serial]:
            holding = holdings.get(key)
            if holding is None:
                # Its holder (a user, a project) was deleted while the
                # commission was pending: nothing is left to charge or free.
                continue
            _, usage_min, usage_max = holding
            if quantity >= 0:
                # The issue raised usage_max by the quantity.
                if do_accept:
                    holding[1] = usage_min + quantity
                else:
                    holding[2] = usage_max - quantity
            elif do_accept:
                # The issue lowered usage_min by |quantity|.
                holding[2] = usage_max + quantity
            else:
                holding[1] = usage_min - quantity
            logs.append((serial, name, issue_time, now, key[0], key[1], key[2],
                         holding[0], holding[1], holding[2], quantity, reason))

    _write_holdings_txn(txn, holdings)
    _log_txn(txn, logs)
    if found:
        prepared.execute(txn, "DELETE FROM identity_commissions WHERE serial = ANY(%s)",
                    (sorted(found),))

    failed: list[tuple[int, errors.Fault]] = []
    for s in dict.fromkeys(accept_list + reject_list):
        if s in both:
            failed.append((s, errors.BadRequest("cannot both accept and reject")))
        elif s not in found:
            failed.append((s, errors.NotFound(f"serial {s} is not a pending commission")))
    return Resolution(accepted=[s for s in accept_list if s in found],
                      rejected=[s for s in reject_list if s in found],
                      failed=failed)


def pending_txn(txn: Any, clientkey: str) -> list[int]:
    """The serials of ``clientkey``'s pending commissions, ascending."""
    txn.execute(
        "SELECT serial FROM identity_commissions WHERE clientkey = %s ORDER BY serial",
        (clientkey,))
    return [row[0] for row in txn.fetchall()]


def clientkeys_txn(txn: Any) -> list[str]:
    """The clients that have pending commissions, sorted."""
    txn.execute("SELECT DISTINCT clientkey FROM identity_commissions ORDER BY clientkey")
    return [row[0] for row in txn.fetchall()]


def commission_txn(txn: Any, clientkey: str, serial: int) -> Commission:
    """One pending commission of ``clientkey``; ``NotFound`` otherwise."""
    txn.execute(
        """SELECT name, issue_time FROM identity_commissions
           WHERE clientkey = %s AND serial = %s""", (clientkey, serial))
    row = txn.fetchone()
    if row is None:
        raise errors.NotFound(f"serial {serial} is not a pending commission")
    txn.execute(
        """SELECT holder, source, resource, quantity FROM identity_provisions
           WHERE serial = %s ORDER BY holder, source, resource""", (serial,))
    return Commission(
        serial=serial, clientkey=clientkey, name=row[0], issue_time=row[1],
        provisions=tuple(_provision((r[0], r[1], r[2]), r[3]) for r in txn.fetchall()))
