"""What the network opcodes do to the simulated configuration.

Ganeti 3.0's ``OP_NETWORK_ADD``, ``OP_NETWORK_REMOVE``,
``OP_NETWORK_CONNECT`` and ``OP_NETWORK_DISCONNECT``, in the two phases of
``snfd.ganeti_sim.instances`` (``prepare`` while the op is ``waiting``, the
``Plan``'s generator once it is ``running``).  Measured on a real cluster:

* an unknown network or group fails in ``prepare`` (no ``exec_timestamp``):
  ``Network 'x' not found`` / ``Node group 'x' not found``, unknown_entity;
* every other check fails once running, with a log warning first where
  Ganeti writes one: removing a connected network (``Network still
  connected``, wrong_state), disconnecting a network NICs still use
  (``Conflicting IP addresses found;  remove/modify the corresponding
  network interfaces``, wrong_state, two spaces included), adding a
  network whose name exists (already_exists);
* a bad gateway or reservation is an ``OpExecError`` ("Cannot create IP
  address pool for network 'n': 10.97.0.0/28 does not contain 10.96.0.1");
* connecting twice, or disconnecting a network that is not connected,
  succeeds with a warning and changes nothing;
* a network may be removed only when it is connected to no group, and it
  cannot be disconnected while a NIC is on it, so no instance ever points
  at a removed network.

The simulator has one node group, ``default``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from snfd.ganeti_sim.instances import DRY_RUN_MESSAGE, Plan, Steps, lookup_network
from snfd.ganeti_sim.model import ClusterConfig, Network, PoolError, new_uuid
from snfd.ganeti_sim.opcodes import (
    ECODE_EXISTS,
    ECODE_INVAL,
    ECODE_NOENT,
    ECODE_STATE,
    OpError,
    check_tag,
    prereq,
)

_MAC_PREFIX = re.compile(r"^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$")


def _network_lock(name: str) -> str:
    return f"network/{name}"


def _group_lock() -> str:
    return f"nodegroup/{ClusterConfig.GROUP}"


def _check_group(name: Any) -> None:
    if name != ClusterConfig.GROUP:
        raise prereq(f"Node group '{name}' not found", ECODE_NOENT)


def prepare(config: ClusterConfig, op: dict[str, Any], now: Callable[[], float]) -> Plan:
    """Check a network opcode and plan it (see ``instances.prepare``)."""
    units: dict[str, Callable[..., Plan]] = {
        "OP_NETWORK_ADD": _prepare_add,
        "OP_NETWORK_REMOVE": _prepare_remove,
        "OP_NETWORK_CONNECT": _prepare_connect,
        "OP_NETWORK_DISCONNECT": _prepare_disconnect,
    }
    return units[op["OP_ID"]](config, op, now)


# -- add ----------------------------------------------------------------------

def _prepare_add(config: ClusterConfig, op: dict[str, Any], now: Callable[[], float]) -> Plan:
    prefix = op.get("mac_prefix")
    if prefix:
        if not isinstance(prefix, str) or not _MAC_PREFIX.match(prefix.lower()):
            raise prereq(f"Invalid MAC address prefix '{prefix}'", ECODE_INVAL)
        op["mac_prefix"] = prefix.lower()
    name = op["network_name"]

    def run(o: dict[str, Any]) -> Steps:
        if name in config.networks:
            raise prereq(f"Desired network name '{name}' already exists as a network"
                         f" (UUID: {config.networks[name].uuid})", ECODE_EXISTS)
        for tag in o.get("tags") or []:
            check_tag(tag)
        stamp = now()
        net = Network(name=name, uuid=new_uuid(), network=o["network"], ctime=stamp,
                      mtime=stamp, gateway=o.get("gateway"), network6=o.get("network6"),
                      gateway6=o.get("gateway6"), mac_prefix=o.get("mac_prefix"),
                      tags=list(dict.fromkeys(o.get("tags") or [])))
        try:
            net.initialise()
        except PoolError as e:
            raise OpError("OpExecError", f"Cannot create IP address pool for network"
                          f" '{name}': {e}") from None
        if o.get("conflicts_check"):
            for node in sorted(config.nodes.values(), key=lambda n: n.name):
                if net.contains(node.pip) and node.pip not in net.external:
                    net.external.append(node.pip)
                    yield f" - INFO: Reserved IP address of node '{node.name}' ({node.pip})"
        for address in o.get("add_reserved_ips") or []:
            try:
                net.reserve_external(address)
            except PoolError as e:
                raise OpError("OpExecError",
                              f"Cannot reserve IP address '{address}': {e}") from None
        if o.get("dry_run"):
            yield DRY_RUN_MESSAGE
            return None
        config.networks[name] = net
        return None

    return Plan(locks=frozenset({_network_lock(name)}), run=run)


# -- remove -------------------------------------------------------------------

def _prepare_remove(config: ClusterConfig, op: dict[str, Any],
                    now: Callable[[], float]) -> Plan:
    net = lookup_network(config, op.get("network_name"))

    def run(o: dict[str, Any]) -> Steps:
        if net.uuid in config.group_networks:
            yield (f" - WARNING: Network '{net.name}' is connected to the following node"
                   f" groups: {ClusterConfig.GROUP}")
            raise prereq("Network still connected", ECODE_STATE)
        if o.get("dry_run"):
            yield DRY_RUN_MESSAGE
            return None
        config.networks.pop(net.name, None)
        return None

    return Plan(locks=frozenset({_network_lock(net.name), _group_lock()}), run=run)


# -- connect / disconnect ---------------------------------------------------------

def _conflicts(config: ClusterConfig, net: Network, action: str,
               conflicting: Callable[[Any], bool]) -> Steps:
    """Ganeti's ``_NetworkConflictCheck``: warn and fail when NICs conflict."""
    found = []
    for inst in sorted(config.instances.values(), key=lambda i: i.name):
        nics = [f"nic{i}/{nic.ip}" for i, nic in enumerate(inst.nics) if conflicting(nic)]
        if nics:
            found.append(f"{inst.name}: {', '.join(nics)}")
    if found:
        yield (f" - WARNING: IP addresses from network '{net.name}', which is about to"
               f" {action} node group '{ClusterConfig.GROUP}', are in use:"
               f" {', '.join(found)}")
        raise prereq("Conflicting IP addresses found;  remove/modify the corresponding"
                     " network interfaces", ECODE_STATE)


def _prepare_connect(config: ClusterConfig, op: dict[str, Any],
                     now: Callable[[], float]) -> Plan:
    net = lookup_network(config, op.get("network_name"))
    _check_group(op.get("group_name"))

    def run(o: dict[str, Any]) -> Steps:
        if net.uuid in config.group_networks:
            yield (f" - WARNING: Network '{net.name}' is already mapped to group"
                   f" '{ClusterConfig.GROUP}'")
            return None
        if o.get("conflicts_check"):
            yield from _conflicts(config, net, "connect to",
                                  lambda nic: nic.ip is not None and net.contains(nic.ip))
        if o.get("dry_run"):
            yield DRY_RUN_MESSAGE
            return None
        config.group_networks[net.uuid] = {"mode": o["network_mode"],
                                           "link": o["network_link"],
                                           "vlan": o.get("network_vlan") or ""}
        config.group_serial += 1
        config.group_mtime = now()
        return None

    return Plan(locks=frozenset({_network_lock(net.name), _group_lock()}), run=run)


def _prepare_disconnect(config: ClusterConfig, op: dict[str, Any],
                        now: Callable[[], float]) -> Plan:
    net = lookup_network(config, op.get("network_name"))
    _check_group(op.get("group_name"))

    def run(o: dict[str, Any]) -> Steps:
        if net.uuid not in config.group_networks:
            yield (f" - WARNING: Network '{net.name}' is not mapped to group"
                   f" '{ClusterConfig.GROUP}'")
            return None
        yield from _conflicts(config, net, "disconnect from",
                              lambda nic: nic.network == net.uuid)
        if o.get("dry_run"):
            yield DRY_RUN_MESSAGE
            return None
        del config.group_networks[net.uuid]
        config.group_serial += 1
        config.group_mtime = now()
        return None

    return Plan(locks=frozenset({_network_lock(net.name), _group_lock()}), run=run)
