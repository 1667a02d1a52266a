"""The network service's SQL (``schema/0006_networks.sql``).

Every function takes a transaction (``db.run("cyclades.<name>", fn, ...)``)
and returns values of ``snfd.cyclades.networks.model``.  Allocation
(``take_mac_index``, ``take_link_index``, ``take_address``) runs under a
lock that serialises its pool (an advisory lock per pool, the subnet's
row for addresses); the unique indexes make a double allocation fail even
if a caller forgot the lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg2.extras import Json

from snfd.cyclades.networks import pools
from snfd.cyclades.networks.model import IP, Network, Port, Subnet

# -- networks ---------------------------------------------------------------

_NETWORK = ("id", "name", "flavor", "mode", "link", "mac_prefix", "userid", "project",
            "description", "mac_index", "link_index", "public", "shared", "external",
            "floating_ip_pool", "state", "deleted", "tags", "revision", "created",
            "updated")
NETWORK_SETTINGS = frozenset({
    "name", "description", "shared", "external", "floating_ip_pool", "state", "deleted",
    "tags", "public", "project", "userid"})
_SUBNET_IDS = ("(SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}') FROM cyclades_subnets s"
               " WHERE s.network_id = n.id)")
_NETWORK_SELECT = ("SELECT " + ", ".join(f"n.{c}" for c in _NETWORK) + f", {_SUBNET_IDS}"
                   " FROM cyclades_networks n")


def _network(row: Any) -> Network:
    values = dict(zip(_NETWORK, row[:-1], strict=True))
    values["tags"] = tuple(values["tags"] or ())
    return Network(**values, subnets=tuple(row[-1] or ()))


def insert_network_txn(txn: Any, **values: Any) -> Network:
    names = list(values)
    txn.execute(f"INSERT INTO cyclades_networks ({', '.join(names)})"
                f" VALUES ({', '.join(['%s'] * len(names))}) RETURNING id",
                [list(v) if isinstance(v, tuple) else v for v in values.values()])
    found = network_txn(txn, txn.fetchone()[0])
    assert found is not None
    return found


def network_txn(txn: Any, network_id: int, for_update: bool = False) -> Network | None:
    """A live network, or None."""
    lock = " FOR UPDATE OF n" if for_update else ""
    txn.execute(f"{_NETWORK_SELECT} WHERE n.id = %s AND NOT n.deleted{lock}", (network_id,))
    row = txn.fetchone()
    return _network(row) if row else None


def networks_txn(txn: Any, *, user: str | None = None, public: bool | None = None,
                 floating_ip_pool: bool | None = None) -> list[Network]:
    """Live networks by id: with ``user`` those it may see (its own,
    public and shared ones); filtered by ``public``/``floating_ip_pool``."""
    where: list[str] = ["NOT n.deleted"]
    args: list[Any] = []
    if user is not None:
        where.append("(n.userid = %s OR n.public OR n.shared)")
        args.append(user)
    if public is not None:
        where.append("n.public = %s")
        args.append(public)
    if floating_ip_pool is not None:
        where.append("n.floating_ip_pool = %s")
        args.append(floating_ip_pool)
    txn.execute(f"{_NETWORK_SELECT} WHERE {' AND '.join(where)} ORDER BY n.id", args)
    return [_network(r) for r in txn.fetchall()]


def update_network_txn(txn: Any, network_id: int, **fields: Any) -> Network | None:
    """Change ``NETWORK_SETTINGS`` columns; bumps revision and updated."""
    _check(fields, NETWORK_SETTINGS)
    _update(txn, "cyclades_networks", network_id, fields)
    txn.execute(f"{_NETWORK_SELECT} WHERE n.id = %s", (network_id,))
    row = txn.fetchone()
    return _network(row) if row else None


def take_mac_index_txn(txn: Any, base: str, size: int) -> int | None:
    """The lowest usable free index of the MAC-prefix pool, or None."""
    txn.execute("SELECT pg_advisory_xact_lock(hashtext('cyclades.mac_prefix_pool'))")
    txn.execute("SELECT mac_index FROM cyclades_networks"
                " WHERE NOT deleted AND mac_index IS NOT NULL")
    used = {r[0] for r in txn.fetchall()}
    return next((i for i in range(1, size) if i not in used
                 and pools.usable_mac_index(base, i)), None)


def take_link_index_txn(txn: Any, size: int) -> int | None:
    """The lowest free index (1..size) of the bridge pool, or None."""
    txn.execute("SELECT pg_advisory_xact_lock(hashtext('cyclades.bridge_pool'))")
    txn.execute("SELECT link_index FROM cyclades_networks"
                " WHERE NOT deleted AND link_index IS NOT NULL")
    used = {r[0] for r in txn.fetchall()}
    return next((i for i in range(1, size + 1) if i not in used), None)


# -- backend networks -----------------------------------------------------------

def backend_network_txn(txn: Any, network_id: int, backend_id: int,
                        for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    txn.execute("SELECT operstate, jobs, backendjobid, backendjobstatus, backendlogmsg"
                " FROM cyclades_backend_networks WHERE network_id = %s AND backend_id = %s"
                + lock, (network_id, backend_id))
    row = txn.fetchone()
    if row is None:
        return None
    return {"operstate": row[0], "jobs": list(row[1] or ()), "backendjobid": row[2],
            "backendjobstatus": row[3], "backendlogmsg": row[4]}


def backend_networks_txn(txn: Any, network_id: int | None = None,
                         backend_id: int | None = None) -> list[dict[str, Any]]:
    where: list[str] = []
    args: list[Any] = []
    if network_id is not None:
        where.append("network_id = %s")
        args.append(network_id)
    if backend_id is not None:
        where.append("backend_id = %s")
        args.append(backend_id)
    txn.execute("SELECT network_id, backend_id, operstate, jobs FROM cyclades_backend_networks"
                + (" WHERE " + " AND ".join(where) if where else "")
                + " ORDER BY network_id, backend_id", args)
    return [{"network_id": r[0], "backend_id": r[1], "operstate": r[2], "jobs": list(r[3])}
            for r in txn.fetchall()]


def put_backend_network_txn(txn: Any, network_id: int, backend_id: int, **fields: Any) -> None:
    """Insert or update the network's row on a backend."""
    txn.execute("INSERT INTO cyclades_backend_networks (network_id, backend_id)"
                " VALUES (%s, %s) ON CONFLICT DO NOTHING", (network_id, backend_id))
    if fields:
        sets = ", ".join(f"{k} = %s" for k in fields)
        txn.execute(f"UPDATE cyclades_backend_networks SET {sets}"
                    " WHERE network_id = %s AND backend_id = %s",
                    [*fields.values(), network_id, backend_id])


def drop_backend_network_txn(txn: Any, network_id: int, backend_id: int) -> None:
    txn.execute("DELETE FROM cyclades_backend_networks WHERE network_id = %s"
                " AND backend_id = %s", (network_id, backend_id))


# -- subnets ----------------------------------------------------------------------

_SUBNET = ("id", "network_id", "ipversion", "cidr", "gateway", "name", "description",
           "userid", "project", "dhcp", "dns_nameservers", "host_routes", "pools", "tags",
           "revision", "created", "updated")
_SUBNET_SELECT = ("SELECT id, network_id, ipversion, cidr::text, host(gateway), name,"
                  " description, userid, project, dhcp, dns_nameservers, host_routes, pools,"
                  " tags, revision, created, updated FROM cyclades_subnets")
SUBNET_SETTINGS = frozenset({"name", "description", "dns_nameservers", "host_routes",
                             "tags", "gateway", "dhcp"})


def _subnet(row: Any) -> Subnet:
    values = dict(zip(_SUBNET, row, strict=True))
    values["dns_nameservers"] = tuple(values["dns_nameservers"] or ())
    values["host_routes"] = tuple(values["host_routes"] or ())
    values["pools"] = tuple((a, b) for a, b in values["pools"] or ())
    values["tags"] = tuple(values["tags"] or ())
    return Subnet(**values)


def insert_subnet_txn(txn: Any, network: Network, req: pools.SubnetRequest, user: str | None,
                      project: str | None) -> Subnet:
    txn.execute(
        "INSERT INTO cyclades_subnets (network_id, name, description, userid, project,"
        " ipversion, cidr, gateway, dhcp, dns_nameservers, host_routes, pools)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (network.id, req.name, req.description, user, project, req.ipversion, req.cidr,
         req.gateway, req.dhcp, list(req.dns_nameservers), Json(list(req.host_routes)),
         Json([list(p) for p in req.pools])))
    found = subnet_txn(txn, txn.fetchone()[0])
    assert found is not None
    return found


def subnet_txn(txn: Any, subnet_id: int, for_update: bool = False) -> Subnet | None:
    txn.execute(f"{_SUBNET_SELECT} WHERE id = %s" + (" FOR UPDATE" if for_update else ""),
                (subnet_id,))
    row = txn.fetchone()
    return _subnet(row) if row else None


def subnets_txn(txn: Any, network_ids: Iterable[int] | None = None) -> list[Subnet]:
    if network_ids is None:
        txn.execute(f"{_SUBNET_SELECT} ORDER BY id")
    else:
        txn.execute(f"{_SUBNET_SELECT} WHERE network_id = ANY(%s) ORDER BY id",
                    (list(network_ids),))
    return [_subnet(r) for r in txn.fetchall()]


def update_subnet_txn(txn: Any, subnet_id: int, **fields: Any) -> Subnet | None:
    _check(fields, SUBNET_SETTINGS)
    if "host_routes" in fields:
        fields["host_routes"] = Json(list(fields["host_routes"]))
    _update(txn, "cyclades_subnets", subnet_id, fields)
    return subnet_txn(txn, subnet_id)


def delete_subnet_txn(txn: Any, subnet_id: int) -> None:
    txn.execute("DELETE FROM cyclades_subnets WHERE id = %s", (subnet_id,))


# -- addresses ----------------------------------------------------------------------

_IP = ("id", "subnet_id", "network_id", "address", "userid", "project", "port_id",
       "floating", "freed_from", "description", "tags", "revision", "created", "updated",
       "device_id")
_IP_SELECT = ("SELECT i.id, i.subnet_id, i.network_id, host(i.address), i.userid, i.project,"
              " i.port_id, i.floating, i.freed_from, i.description, i.tags, i.revision,"
              " i.created, i.updated, p.device_id FROM cyclades_ips i"
              " LEFT JOIN cyclades_ports p ON p.id = i.port_id")
IP_SETTINGS = frozenset({"port_id", "description", "tags", "project", "freed_from"})


def _ip(row: Any) -> IP:
    values = dict(zip(_IP, row, strict=True))
    values["tags"] = tuple(values["tags"] or ())
    return IP(**values)


def used_addresses_txn(txn: Any, subnet_id: int) -> list[str]:
    txn.execute("SELECT host(address) FROM cyclades_ips WHERE subnet_id = %s", (subnet_id,))
    return [r[0] for r in txn.fetchall()]


def take_address_txn(txn: Any, subnet: Subnet, user: str, project: str, *,
                     address: str | None = None, port_id: int | None = None,
                     floating: bool = False) -> IP | None:
    """Allocate ``address`` (or the lowest free one of the pools) in
    ``subnet``, locked here; None when it is taken or none is free."""
    txn.execute("SELECT id FROM cyclades_subnets WHERE id = %s FOR UPDATE", (subnet.id,))
    used = used_addresses_txn(txn, subnet.id)
    if address is None:
        address = pools.choose_address(subnet.pools, used)
        if address is None:
            return None
    elif address in used:
        return None
    txn.execute(
        "INSERT INTO cyclades_ips (subnet_id, network_id, address, port_id, userid, project,"
        " floating) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (subnet.id, subnet.network_id, address, port_id, user, project, floating))
    found = ip_txn(txn, txn.fetchone()[0])
    assert found is not None
    return found


def ip_txn(txn: Any, ip_id: int, for_update: bool = False) -> IP | None:
    txn.execute(f"{_IP_SELECT} WHERE i.id = %s" + (" FOR UPDATE OF i" if for_update else ""),
                (ip_id,))
    row = txn.fetchone()
    return _ip(row) if row else None


def ips_txn(txn: Any, *, port_ids: Iterable[int] | None = None, floating: bool | None = None,
            user: str | None = None, subnet_id: int | None = None) -> list[IP]:
    where: list[str] = []
    args: list[Any] = []
    if port_ids is not None:
        where.append("i.port_id = ANY(%s)")
        args.append(list(port_ids))
    if floating is not None:
        where.append("i.floating = %s")
        args.append(floating)
    if user is not None:
        where.append("i.userid = %s")
        args.append(user)
    if subnet_id is not None:
        where.append("i.subnet_id = %s")
        args.append(subnet_id)
    txn.execute(_IP_SELECT + (" WHERE " + " AND ".join(where) if where else "")
                + " ORDER BY i.id", args)
    return [_ip(r) for r in txn.fetchall()]


def update_ip_txn(txn: Any, ip_id: int, **fields: Any) -> IP | None:
    _check(fields, IP_SETTINGS)
    _update(txn, "cyclades_ips", ip_id, fields)
    return ip_txn(txn, ip_id)


def release_ips_txn(txn: Any, port_id: int) -> None:
    """Free the port's fixed addresses; detach its floating ones."""
    txn.execute("DELETE FROM cyclades_ips WHERE port_id = %s AND NOT floating", (port_id,))
    txn.execute("UPDATE cyclades_ips SET port_id = NULL, updated = now(),"
                " revision = revision + 1 WHERE port_id = %s", (port_id,))


def free_floating_txn(txn: Any, port_id: int) -> None:
    """Detach the port's floating IPs now (its NIC is being removed)."""
    txn.execute("UPDATE cyclades_ips SET port_id = NULL, freed_from = %s, updated = now(),"
                " revision = revision + 1 WHERE port_id = %s AND floating", (port_id, port_id))


def remove_jobs_txn(txn: Any, port_ids: Iterable[int], backend_id: int) -> list[int]:
    """The NIC-removal jobs, on that backend, of those ports that still exist."""
    txn.execute("SELECT p.remove_job FROM cyclades_ports p JOIN cyclades_servers s"
                " ON s.id = p.device_id WHERE p.id = ANY(%s) AND s.backend_id = %s"
                " AND p.remove_job IS NOT NULL", (list(port_ids), backend_id))
    return [r[0] for r in txn.fetchall()]


def delete_ip_txn(txn: Any, ip_id: int) -> None:
    txn.execute("DELETE FROM cyclades_ips WHERE id = %s", (ip_id,))


# -- ports ------------------------------------------------------------------------------

_PORT = ("id", "network_id", "userid", "project", "mac", "name", "description", "device_id",
         "device_owner", "state", "security_groups", "port_security", "admin_state_up",
         "firewall_profile", "remove_job", "preserve", "tags", "revision", "created",
         "updated")
_PORT_SELECT = "SELECT " + ", ".join(_PORT) + " FROM cyclades_ports"
PORT_SETTINGS = frozenset({"name", "description", "device_id", "device_owner", "state",
                           "security_groups", "port_security", "admin_state_up",
                           "firewall_profile", "remove_job", "preserve", "tags"})


def _ports(txn: Any, rows: list[Any]) -> list[Port]:
    ports = []
    for row in rows:
        values = dict(zip(_PORT, row, strict=True))
        for key in ("security_groups", "tags"):
            values[key] = tuple(values[key] or ())
        ports.append(values)
    by_port: dict[int, list[IP]] = {}
    names: dict[int, tuple[str, str, str]] = {}
    if ports:
        for ip in ips_txn(txn, port_ids=[p["id"] for p in ports]):
            assert ip.port_id is not None
            by_port.setdefault(ip.port_id, []).append(ip)
        txn.execute("SELECT id, name, mode, link FROM cyclades_networks WHERE id = ANY(%s)",
                    (list({p["network_id"] for p in ports}),))
        names = {r[0]: r[1:] for r in txn.fetchall()}
    groups = {g for p in ports for g in p["security_groups"]}
    group_names: dict[str, str] = {}
    if groups:
        txn.execute("SELECT id, name FROM cyclades_security_groups WHERE id = ANY(%s)",
                    (list(groups),))
        group_names = dict(txn.fetchall())
    out = []
    for p in ports:
        name, mode, link = names.get(p["network_id"], ("", "", ""))
        out.append(Port(**p, ips=tuple(by_port.get(p["id"], ())), network_name=name,
                        network_mode=mode, network_link=link,
                        security_group_names=tuple(group_names.get(g, g)
                                                   for g in p["security_groups"])))
    return out


def insert_port_txn(txn: Any, network: Network, user: str, project: str, mac: str,
                    **values: Any) -> Port | None:
    """A new port; None when its MAC is taken on the network."""
    names = ["network_id", "userid", "project", "mac", *values]
    args = [network.id, user, project, mac,
            *(list(v) if isinstance(v, tuple) else v for v in values.values())]
    txn.execute(f"INSERT INTO cyclades_ports ({', '.join(names)})"
                f" VALUES ({', '.join(['%s'] * len(names))})"
                " ON CONFLICT (network_id, mac) DO NOTHING RETURNING id", args)
    row = txn.fetchone()
    return None if row is None else port_txn(txn, row[0])


def port_txn(txn: Any, port_id: int, for_update: bool = False) -> Port | None:
    txn.execute(f"{_PORT_SELECT} WHERE id = %s" + (" FOR UPDATE" if for_update else ""),
                (port_id,))
    found = _ports(txn, txn.fetchall())
    return found[0] if found else None


def ports_txn(txn: Any, *, user: str | None = None, device_ids: Iterable[int] | None = None,
              network_id: int | None = None) -> list[Port]:
    where: list[str] = []
    args: list[Any] = []
    if user is not None:
        where.append("userid = %s")
        args.append(user)
    if device_ids is not None:
        where.append("device_id = ANY(%s)")
        args.append(list(device_ids))
    if network_id is not None:
        where.append("network_id = %s")
        args.append(network_id)
    txn.execute(_PORT_SELECT + (" WHERE " + " AND ".join(where) if where else "")
                + " ORDER BY id", args)
    return _ports(txn, txn.fetchall())


def update_port_txn(txn: Any, port_id: int, **fields: Any) -> Port | None:
    _check(fields, PORT_SETTINGS)
    _update(txn, "cyclades_ports", port_id, fields)
    return port_txn(txn, port_id)


def delete_port_txn(txn: Any, port_id: int) -> None:
    release_ips_txn(txn, port_id)
    txn.execute("DELETE FROM cyclades_ports WHERE id = %s", (port_id,))


def count_ports_txn(txn: Any, network_id: int) -> int:
    txn.execute("SELECT count(*) FROM cyclades_ports WHERE network_id = %s", (network_id,))
    return int(txn.fetchone()[0])


# -- helpers ----------------------------------------------------------------------------

def _check(fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")


def _update(txn: Any, table: str, row_id: int | str, fields: Mapping[str, Any]) -> None:
    sets = [f"{k} = %s" for k in fields] + ["revision = revision + 1", "updated = now()"]
    txn.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE id = %s",
                [*(list(v) if isinstance(v, tuple) else v for v in fields.values()), row_id])
