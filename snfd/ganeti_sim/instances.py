"""What each opcode does to the simulated configuration.

An opcode runs in two phases, like Ganeti's logical units:

1. ``prepare(config, op)`` runs when the job's process starts (op status
   ``waiting``): it checks the arguments and names the locks the opcode
   needs.  An unknown instance, a duplicate name, a disabled disk template
   or "no changes" fail here, so the op goes ``waiting`` -> ``error`` with no
   ``exec_timestamp``, as on a real cluster.
2. ``Plan.run(op)`` runs once the locks are held (status ``running``) and is
   a generator: each value it yields is a job log message (the job file is
   rewritten per message), ``return`` gives the op result.  Resource and
   policy checks fail here (``running`` -> ``error``); changes to the
   configuration happen between the yields, so ``GET /2/instances`` shows a
   new instance during its create job, as on a real cluster.

The opcode dict ``op`` is the expanded job input; ``run`` writes back what
Ganeti's logical units write back (``pnode``, normalised ``beparams``,
generated NIC MACs...), so the job file shows them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Generator
from typing import Any

import attrs

from snfd.ganeti_sim.model import (
    BE_DEFAULTS,
    BE_KEYS,
    BRIDGED,
    DEFAULT_LINK,
    HV_PARAMETERS,
    ClusterConfig,
    Disk,
    Instance,
    Network,
    Nic,
    new_uuid,
)
from snfd.ganeti_sim.opcodes import (
    ECODE_EXISTS,
    ECODE_INVAL,
    ECODE_NOENT,
    ECODE_NORES,
    ECODE_NOTUNIQUE,
    ECODE_RESOLVER,
    ECODE_STATE,
    MAX_TAGS_PER_OBJ,
    OpError,
    check_tag,
    prereq,
)

DRY_RUN_MESSAGE = " - INFO: dry-run mode requested, not actually executing the operation"

Steps = Generator[str, None, Any]
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
NODE_ALLOC_LOCK = "node-alloc"
# NIC changes and network (dis)connections serialise on the node group, so
# an address chosen from a pool stays free until the job that chose it ends.
GROUP_LOCK = f"nodegroup/{ClusterConfig.GROUP}"


@attrs.frozen
class Plan:
    """What ``prepare`` decided: the locks to hold, the values to add to
    the expanded input, and the running phase."""

    locks: frozenset[str]
    run: Callable[[dict[str, Any]], Steps]
    fill: dict[str, Any] = attrs.Factory(dict)


def _unknown_instance(name: Any) -> OpError:
    return prereq(f"Instance '{name}' not known", ECODE_NOENT)


def _instance_lock(name: str) -> str:
    return f"instance/{name}"


def prepare(config: ClusterConfig, op: dict[str, Any], now: Callable[[], float]) -> Plan:
    """Check ``op`` against ``config`` and plan its execution.

    Raises ``OpError`` for the failures real Ganeti reports before it takes
    locks; an opcode the simulator does not implement fails with
    ``OpPrereqError``/``wrong_input``.
    """
    units: dict[str, Callable[..., Plan]] = {
        "OP_INSTANCE_CREATE": _prepare_create,
        "OP_INSTANCE_REMOVE": _prepare_remove,
        "OP_INSTANCE_STARTUP": _prepare_startup,
        "OP_INSTANCE_SHUTDOWN": _prepare_shutdown,
        "OP_INSTANCE_REBOOT": _prepare_reboot,
        "OP_INSTANCE_SET_PARAMS": _prepare_set_params,
        "OP_INSTANCE_REINSTALL": _prepare_reinstall,
        "OP_INSTANCE_MIGRATE": _prepare_migration,
        "OP_INSTANCE_FAILOVER": _prepare_migration,
        "OP_TAGS_SET": _prepare_tags,
        "OP_TAGS_DEL": _prepare_tags,
        "OP_INSTANCE_QUERY_DATA": _prepare_query_data,
        "OP_OS_DIAGNOSE": _prepare_os_diagnose,
    }
    unit = units.get(op.get("OP_ID", ""))
    if unit is None:
        raise prereq(f"Opcode {op.get('OP_ID')} is not implemented by the simulator",
                     ECODE_INVAL)
    return unit(config, op, now)


def _existing(config: ClusterConfig, name: Any) -> Instance:
    inst = config.instances.get(name) if isinstance(name, str) else None
    if inst is None:
        raise _unknown_instance(name)
    return inst


def _dry_run(op: dict[str, Any]) -> bool:
    return bool(op.get("dry_run"))


# -- create ---------------------------------------------------------------

def _format_size(mib: int) -> str:
    """Ganeti's human unit format: 512M, 1.0G, 2.5T."""
    if mib < 1024:
        return f"{mib}M"
    if mib < 1024 * 1024:
        return f"{mib / 1024:.1f}G"
    return f"{mib / (1024 * 1024):.1f}T"


def _normalise_beparams(be: dict[str, Any]) -> dict[str, Any]:
    for key in be:
        if key not in BE_KEYS:
            raise OpError("TypeEnforcementError", f"Unknown parameter '{key}'")
    out = dict(be)
    if "memory" in out:
        memory = out.pop("memory")
        out.setdefault("maxmem", memory)
        out.setdefault("minmem", memory)
    for key in ("maxmem", "minmem", "vcpus", "spindle_use"):
        if key in out and (not isinstance(out[key], int) or isinstance(out[key], bool)):
            raise OpError("TypeEnforcementError", f"{key} must be an integer")
    return out


def _check_hvparams(hv: dict[str, Any], hypervisor: str) -> None:
    """Refuse a parameter ``hypervisor`` does not declare."""
    known = HV_PARAMETERS.get(hypervisor, frozenset())
    for key in hv:
        if key not in known:
            raise OpError("TypeEnforcementError", f"Unknown parameter '{key}'")


def _policy_range(config: ClusterConfig, what: str) -> tuple[int, int]:
    minmax = config.ipolicy["minmax"][0]
    return minmax["min"][what], minmax["max"][what]


def _violation(config: ClusterConfig, what: str, value: int, group: str) -> str | None:
    low, high = _policy_range(config, what)
    if low <= value <= high:
        return None
    return (f"Instance allocation to group {group} (default) violates policy:"
            f" {what} value {value} is not in range [{low}, {high}]")


def _group_repr(config: ClusterConfig) -> str:
    return ("{'name': 'default', 'ndparams': {}, 'diskparams': {}, 'ipolicy': {},"
            " 'serial_no': 1, 'alloc_policy': 'preferred', 'networks': {}, 'ctime': 0,"
            f" 'mtime': {config.ctime}, 'uuid': '{config.group_uuid}', 'tags': []}}")


#: htools' failure modes, in the order its messages list them.
FAIL_MODES = ("FailMem", "FailDisk", "FailCPU", "FailN1", "FailTags", "FailMig",
              "FailDiskCount", "FailSpindles", "FailInternal")
#: A cluster tag ``htools:iextags:<prefix>`` makes instance tags starting
#: with ``<prefix>`` exclusion tags.
EXTAGS_PREFIX = "htools:iextags:"


@attrs.frozen
class Demand:
    """What an instance asks of a node, as the iallocator sees it.

    ``running`` False (a stopped instance being moved) leaves its memory
    out of the node's free memory check, not out of the policy check.
    """

    memory: int
    vcpus: int
    disks: tuple[int, ...]
    usage: int
    template: str
    tags: tuple[str, ...] = ()
    running: bool = True


def exclusion_tags(config: ClusterConfig, tags: list[str] | tuple[str, ...]) -> set[str]:
    """The tags among ``tags`` that the cluster's ``htools:iextags:<prefix>``
    tags make exclusion tags.

    As htools 3.0's ``updateExclTags`` does it, ``<prefix>`` is matched as a
    plain string prefix: ``htools:iextags:svc`` covers ``svc:dns`` and also
    ``svcdns`` (the hbal man page speaks of ``svc:*`` only).
    """
    prefixes = [t[len(EXTAGS_PREFIX):] for t in config.tags if t.startswith(EXTAGS_PREFIX)]
    prefixes = [prefix for prefix in prefixes if prefix]
    return {tag for tag in tags if any(tag.startswith(prefix) for prefix in prefixes)}


def _node_failure(config: ClusterConfig, node: str, demand: Demand,
                  moving: str | None = None) -> str | None:
    """The iallocator's reason why ``node`` cannot take the instance, or
    None when it can.

    Like hail, one reason per node, the first check that fails: the
    instance policy (below the minimum, then above the maximum: memory,
    each disk, CPUs, disk count; then the disk template), then the node
    (free memory, free disk, the vCPU ratio, exclusion tags).  ``moving``
    names an instance being relocated, left out of the node's tag count.
    """
    minmax = config.ipolicy["minmax"][0]
    for bound, outside in ((minmax["min"], lambda value, limit: value < limit),
                           (minmax["max"], lambda value, limit: value > limit)):
        if outside(demand.memory, bound["memory-size"]):
            return "FailMem"
        if any(outside(size, bound["disk-size"]) for size in demand.disks):
            return "FailDisk"
        if outside(demand.vcpus, bound["cpu-count"]):
            return "FailCPU"
        if demand.template != "diskless" and outside(len(demand.disks), bound["disk-count"]):
            return "FailDiskCount"
    if demand.template not in config.ipolicy.get("disk-templates", [demand.template]):
        return "FailDisk"
    if demand.running and config.mfree(node) < demand.memory:
        return "FailMem"
    if demand.template != "diskless" and config.dfree(node) < demand.usage:
        return "FailDisk"
    ratio = config.ipolicy.get("vcpu-ratio", 4.0)
    if config.vcpus_used(node) + demand.vcpus > config.nodes[node].cpus * ratio:
        return "FailCPU"
    wanted = exclusion_tags(config, demand.tags)
    if wanted:
        present = set()
        for inst in config.primaries(node):
            if inst.name != moving:
                present |= exclusion_tags(config, inst.tags)
        if wanted & present:
            return "FailTags"
    return None


def _usable_nodes(config: ClusterConfig) -> list[str]:
    return [n.name for n in config.nodes.values()
            if n.vm_capable and not n.offline and not n.drained]


def _allocate(config: ClusterConfig, iallocator: str, demand: Demand) -> list[str]:
    """Nodes for a new instance as a simple iallocator picks them: the
    usable nodes that fit, most free memory first; drbd takes two.

    A refusal lists, as hail does, how many nodes failed for each reason
    (one reason per node), in htools' order of failure modes."""
    usable = _usable_nodes(config)
    counts: dict[str, int] = {}
    fitting = []
    for node in usable:
        reason = _node_failure(config, node, demand)
        if reason is None:
            fitting.append(node)
        else:
            counts[reason] = counts.get(reason, 0) + 1
    wanted = 2 if demand.template == "drbd" else 1
    fitting.sort(key=lambda n: (-config.mfree(n), n))
    if len(fitting) >= wanted:
        return fitting[:wanted]
    if not counts:
        counts["FailN1"] = max(1, len(usable))
    text = ", ".join(f"{reason}: {counts[reason]}" for reason in FAIL_MODES
                     if reason in counts)
    raise prereq(
        f"Can't compute nodes using iallocator '{iallocator}': Request failed: Group default"
        f" (preferred): No valid allocation solutions, failure reasons: {text}", ECODE_NORES)


def _relocate(config: ClusterConfig, iallocator: str, inst: Instance) -> str:
    """A new primary node for ``inst`` (a shared-storage or diskless
    instance being migrated or failed over), as hail's relocation picks
    it: another usable node that fits, most free memory first.

    A refusal names each node tried and why (hail's "Can't find any good
    node:" followed by `` Node <name> failed: <reason>;`` per node, nothing
    when there is no other node)."""
    be = inst.filled_beparams()
    demand = Demand(memory=be["maxmem"], vcpus=be["vcpus"],
                    disks=tuple(d.size for d in inst.disks), usage=inst.disk_usage(),
                    template=inst.disk_template, tags=tuple(inst.tags),
                    running=inst.oper_state)
    failures = []
    fitting = []
    for node in _usable_nodes(config):
        if node == inst.pnode:
            continue
        reason = _node_failure(config, node, demand, moving=inst.name)
        if reason is None:
            fitting.append(node)
        else:
            failures.append(f" Node {node} failed: {reason};")
    if fitting:
        return sorted(fitting, key=lambda n: (-config.mfree(n), n))[0]
    raise prereq(f"Can't compute nodes using iallocator '{iallocator}': Request failed:"
                 f" Can't find any good node: {''.join(failures)}", ECODE_NORES)


def _prepare_create(config: ClusterConfig, op: dict[str, Any],
                    now: Callable[[], float]) -> Plan:
    name = op["instance_name"]
    if op.get("mode") != "create":
        raise prereq(f"Instance creation mode '{op.get('mode')}' is not implemented by the"
                     " simulator", ECODE_INVAL)
    template = op["disk_template"]
    if template not in config.disk_templates:
        raise OpError("OpPrereqError",
                      f"Disk template '{template}' is not enabled in cluster. Enabled disk"
                      f" templates are: {','.join(config.disk_templates)}")
    if op.get("ip_check") and not op.get("name_check"):
        raise prereq("Cannot do IP address check without a name check", ECODE_INVAL)
    if op.get("name_check"):
        # Names of simulated instances never resolve.
        raise prereq(f"The given name ({name}) does not resolve: Temporary failure in name"
                     " resolution", ECODE_RESOLVER)
    if name in config.instances:
        raise prereq(f"Instance '{name}' is already in the cluster", ECODE_EXISTS)
    if not op.get("os_type"):
        raise prereq("No guest OS or OS image specified", ECODE_INVAL)
    for key in ("pnode", "snode"):
        node = op.get(key)
        if node is not None and node not in config.nodes:
            raise prereq(f"Node '{node}' not known", ECODE_NOENT)
    if op.get("pnode") and op.get("iallocator"):
        raise prereq("Only one of iallocator and primary node can be given", ECODE_INVAL)
    fill: dict[str, Any] = {}
    if not op.get("pnode") and not op.get("iallocator"):
        fill["iallocator"] = config.iallocator
    locks = frozenset({_instance_lock(name), NODE_ALLOC_LOCK, GROUP_LOCK})
    return Plan(locks=locks, fill=fill, run=lambda o: _run_create(config, o, now))


def lookup_network(config: ClusterConfig, name: Any) -> Network:
    """The network called ``name`` (or with that uuid); Ganeti's
    ``OpPrereqError`` when there is none."""
    net = config.networks.get(name) if isinstance(name, str) else None
    if net is None:
        net = config.network_by_uuid(name)
    if net is None:
        raise prereq(f"Network '{name}' not found", ECODE_NOENT)
    return net


def _nic_network(config: ClusterConfig, params: dict[str, Any]) -> Network | None:
    """The network a NIC's ``params`` name (None for none), checked as
    Ganeti's ``_ComputeNics`` does."""
    name = params.get("network")
    if name is None or (isinstance(name, str) and name.lower() == "none"):
        network = None
    else:
        if "mode" in params or "link" in params:
            raise prereq("If network is given, no mode or link is allowed to be passed",
                         ECODE_INVAL)
        network = name
    ip = params.get("ip")
    if isinstance(ip, str) and ip.lower() == "pool" and network is None:
        raise prereq("if ip=pool, parameter network must be passed too", ECODE_INVAL)
    return None if network is None else lookup_network(config, network)


def _free_ip(config: ClusterConfig, net: Network, pending: set[str]) -> str | None:
    """The first address of ``net`` nobody holds, as Ganeti's pool picks it."""
    taken = set(net.external) | config.network_ips(net.uuid) | pending
    return next((str(a) for a in net.subnet if str(a) not in taken), None)


def _ip_available(config: ClusterConfig, net: Network, ip: str, pending: set[str]) -> bool:
    if not net.contains(ip):
        return False
    ip = str(ipaddress.ip_address(ip))
    return ip not in net.external and ip not in config.network_ips(net.uuid) \
        and ip not in pending


def _netparams(config: ClusterConfig, net: Network) -> dict[str, str] | None:
    return config.group_networks.get(net.uuid)


def _apply_netparams(nic: Nic, params: dict[str, str]) -> None:
    nic.mode, nic.link, nic.vlan = params["mode"], params["link"], params["vlan"]
    nic.custom = {"mode": nic.mode, "link": nic.link, "vlan": nic.vlan}


def _attach_nics(config: ClusterConfig, nics: list[Nic], pnode: str) -> Steps:
    """Give a new instance's network NICs their group's netparams and their
    addresses (``ip: "pool"`` picks one), as ``LUInstanceCreate`` does once
    the primary node is known."""
    pending: set[str] = set()
    for index, nic in enumerate(nics):
        net = config.network_by_uuid(nic.network)
        if net is None:
            continue
        params = _netparams(config, net)
        if params is None:
            raise prereq(f"No netparams found for network {net.name}. Probably not"
                         f" connected to node's {pnode} nodegroup", ECODE_INVAL)
        yield (f" - INFO: NIC/{index} inherits netparams"
               f" {[params['link'], params['mode'], params['vlan']]!r}")
        _apply_netparams(nic, params)
        if nic.ip is not None and nic.ip.lower() == "pool":
            ip = _free_ip(config, net, pending)
            if ip is None:
                raise prereq(f"Unable to get a free IP for NIC {index} from the address"
                             " pool", ECODE_STATE)
            nic.ip = ip
            pending.add(ip)
            yield f" - INFO: Chose IP {ip} from network {net.name}"
        elif nic.ip is not None:
            if not _ip_available(config, net, nic.ip, pending):
                raise prereq(f"IP address {nic.ip} already in use or does not belong to"
                             f" network {net.name}", ECODE_NOTUNIQUE)
            pending.add(nic.ip)


def _attach_added_nic(config: ClusterConfig, net: Network, nic: Nic,
                      pending: set[str]) -> Steps:
    """A NIC added by a modify joins ``net``: its group's netparams and an
    address (``LUInstanceSetParams``'s texts, which differ from create's)."""
    params = _netparams(config, net)
    if params is None:
        raise prereq(f"No netparams found for the network {net.name}, probably not"
                     " connected", ECODE_INVAL)
    _apply_netparams(nic, params)
    if nic.ip == "pool":
        ip = _free_ip(config, net, pending)
        if ip is None:
            raise prereq("Unable to get a free IP from the address pool", ECODE_STATE)
        nic.ip = ip
        pending.add(ip)
        yield f" - INFO: Chose IP {ip} from network {net.name}"
    elif nic.ip is not None:
        if not _ip_available(config, net, nic.ip, pending):
            raise prereq(f"IP {nic.ip} not available in network {net.name}", ECODE_NOTUNIQUE)
        pending.add(nic.ip)
        yield f" - INFO: Reserving IP {nic.ip} in network {net.name}"


def _new_nic(config: ClusterConfig, params: dict[str, Any], taken: set[str]) -> Nic:
    """A NIC from a client's ``params``, checked; a network NIC keeps
    ``ip`` "pool" and the cluster's nicparams until ``_attach_nics`` (or a
    modify's add) gives it its address and its group's netparams."""
    allowed = {"mac", "ip", "mode", "link", "network", "name", "vlan", "bridge"}
    for key in params:
        if key not in allowed:
            raise prereq(f"Invalid NIC parameter '{key}'", ECODE_INVAL)
    net = _nic_network(config, params)
    mac = params.get("mac")
    if mac in (None, "auto", "generate"):
        prefix = net.mac_prefix if net is not None else None
        mac = config.new_mac(prefix)
        while mac in taken:
            mac = config.new_mac(prefix)
    else:
        mac = str(mac).lower()
        if not _MAC_RE.match(mac):
            raise prereq(f"Invalid MAC address specified: {mac}", ECODE_INVAL)
        if mac in taken:
            raise prereq(f"MAC address {mac} already in use in cluster", ECODE_NOTUNIQUE)
    ip = params.get("ip")
    if isinstance(ip, str) and ip.lower() == "none":
        ip = None
    if isinstance(ip, str) and ip.lower() == "pool":
        ip = "pool"
    elif ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise prereq(f"Invalid IP address '{ip}'", ECODE_INVAL) from None
    custom: dict[str, Any] = {k: params[k] for k in ("mode", "link", "vlan") if k in params}
    if "bridge" in params and "link" not in params:
        custom["link"] = params["bridge"]
    mode = custom.get("mode", BRIDGED)
    if mode not in ("bridged", "routed", "openvswitch"):
        raise prereq(f"Invalid NIC mode '{mode}'", ECODE_INVAL)
    taken.add(mac)
    return Nic(uuid=new_uuid(), mac=mac, name=params.get("name"), ip=ip,
               network=None if net is None else net.uuid, mode=mode,
               link=custom.get("link", DEFAULT_LINK), vlan=custom.get("vlan", ""),
               custom=custom)




def _used_macs(config: ClusterConfig) -> set[str]:
    return {n.mac for i in config.instances.values() for n in i.nics}


def _run_create(config: ClusterConfig, op: dict[str, Any], now: Callable[[], float]) -> Steps:
    name = op["instance_name"]
    if name in config.instances:
        raise prereq(f"Instance '{name}' is already in the cluster", ECODE_EXISTS)
    template = op["disk_template"]
    start = bool(op.get("start"))
    if op.get("no_install"):
        if start:
            yield " - INFO: No-installation mode selected, disabling startup"
        start = False
    hypervisor = op.get("hypervisor") or config.hypervisor
    if hypervisor != config.hypervisor:
        # LUInstanceCreate.CheckPrereq: one hypervisor is enabled.
        raise prereq(f"Selected hypervisor ({hypervisor}) not enabled in the cluster"
                     f" ({config.hypervisor})", ECODE_STATE)
    beparams = _normalise_beparams(op.get("beparams") or {})
    _check_hvparams(op.get("hvparams") or {}, hypervisor)
    for tag in op.get("tags") or []:
        check_tag(tag)
    filled = dict(config_be_defaults())
    filled.update(beparams)
    memory, vcpus = filled["maxmem"], filled["vcpus"]
    if filled["minmem"] > filled["maxmem"]:
        raise prereq("Minimum memory is greater than maximum memory", ECODE_INVAL)
    disk_sizes = []
    for index, disk in enumerate(op.get("disks") or []):
        size = disk.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise prereq(f"Invalid disk size for disk {index}: {size!r}", ECODE_INVAL)
        disk_sizes.append(size)
    if template == "diskless":
        if disk_sizes:
            raise prereq("Disk template diskless does not take disks", ECODE_INVAL)
        usage = 0
    else:
        usage = sum(disk_sizes) + (128 * len(disk_sizes) if template == "drbd" else 0)
    group = config.group_uuid
    ignore_policy = bool(op.get("ignore_ipolicy"))
    taken = _used_macs(config)
    nics = [_new_nic(config, dict(params), taken) for params in op.get("nics") or []]
    # Ganeti fills these in before it looks for nodes.
    op["beparams"] = beparams
    if template == "file" and op.get("file_driver") is None:
        op["file_driver"] = "loop"
    if op.get("hypervisor") is None:
        op["hypervisor"] = hypervisor
    if op.get("osparams_private") is None:
        op["osparams_private"] = {}
    if op.get("osparams_secret") is None:
        op["osparams_secret"] = {}

    if op.get("pnode"):
        nodes = [op["pnode"]]
        if template == "drbd":
            if not op.get("snode"):
                raise prereq("The networked disk templates need a mirror node", ECODE_INVAL)
            if op["snode"] == op["pnode"]:
                raise prereq("The secondary node cannot be the primary node", ECODE_INVAL)
            nodes.append(op["snode"])
        if not ignore_policy:
            checks = [("memory-size", memory), ("cpu-count", vcpus)]
            if template != "diskless":
                checks.append(("disk-count", len(disk_sizes)))
                checks += [("disk-size", s) for s in disk_sizes]
            for what, value in checks:
                text = _violation(config, what, value, group)
                if text:
                    raise prereq(text, ECODE_INVAL)
        pnode = nodes[0]
        if start and config.mfree(pnode) < memory:
            raise prereq(f"Not enough memory on node {pnode} for starting instance {name}:"
                         f" needed {memory} MiB, available {config.mfree(pnode)} MiB",
                         ECODE_NORES)
        for node in nodes:
            if config.dfree(node) < usage:
                raise prereq(f"Not enough disk space on target node {node}: required"
                             f" {usage} MiB, available {config.dfree(node)} MiB", ECODE_NORES)
    else:
        iallocator = op.get("iallocator") or config.iallocator
        for nic in nics:
            net = config.network_by_uuid(nic.network)
            if net is not None and _netparams(config, net) is None:
                raise prereq(f"Can't compute nodes using iallocator '{iallocator}': Request"
                             f" failed: group {ClusterConfig.GROUP} is not connected to a"
                             f" network required by instance {name}", ECODE_NORES)
        demand = Demand(memory=memory, vcpus=vcpus, disks=tuple(disk_sizes), usage=usage,
                        template=template, tags=tuple(op.get("tags") or []))
        nodes = _allocate(config, iallocator, demand)
        yield (f" - INFO: Selected nodes for instance {name} via iallocator {iallocator}:"
               f" {', '.join(nodes)}")
    op["pnode"] = nodes[0]
    op["pnode_uuid"] = config.nodes[nodes[0]].uuid
    if len(nodes) > 1:
        op["snode"] = nodes[1]
        op["snode_uuid"] = config.nodes[nodes[1]].uuid

    nic_count = len(op.get("nics") or [])
    if not ignore_policy:
        text = _violation(config, "nic-count", nic_count, group)
        if text:
            raise prereq(text, ECODE_INVAL)
    yield from _attach_nics(config, nics, nodes[0])
    os_type = op["os_type"]
    if os_type not in config.oses:
        raise OpError("OpExecError",
                      f"OS Parameters validation failed on node {nodes[0]}: Directory for"
                      f" OS {os_type.split('+')[0]} not found in search path")
    if _dry_run(op):
        yield DRY_RUN_MESSAGE
        return [config.nodes[n].uuid for n in nodes]

    if template != "diskless":
        for index, size in enumerate(disk_sizes):
            yield f"* disk {index}, size {_format_size(size)}"
    yield "* creating instance disks..."
    stamp = now()
    inst = Instance(
        name=name, uuid=new_uuid(), os=os_type, pnode=nodes[0], snodes=nodes[1:],
        disk_template=template, ctime=stamp, mtime=stamp, nics=nics,
        disks=[Disk(uuid=new_uuid(), size=size, name=d.get("name"),
                    mode=d.get("mode", "rw"))
               for size, d in zip(disk_sizes, op.get("disks") or [], strict=True)],
        beparams=beparams, hvparams=dict(op.get("hvparams") or {}),
        osparams=dict(op.get("osparams") or {}), tags=list(op.get("tags") or []),
        hypervisor=op["hypervisor"])
    config.instances[name] = inst
    yield f"adding instance {name} to cluster config"
    yield "adding disks to cluster config"
    inst.touch(now())
    if template != "diskless":
        if op.get("wait_for_sync", True):
            for _ in range(2):
                yield f" - INFO: Waiting for instance {name} to sync disks"
                yield f" - INFO: Instance {name}'s disks are in sync"
        if not op.get("no_install"):
            yield "* running the instance OS create scripts..."
    if start:
        yield "* starting instance..."
        inst.admin_state = "up"
        inst.start()
        inst.mtime = now()
    return list(nodes)


def config_be_defaults() -> dict[str, Any]:
    """The cluster's default backend parameters."""
    return dict(BE_DEFAULTS)


# -- remove / startup / shutdown / reboot ------------------------------------

def _simple_plan(config: ClusterConfig, op: dict[str, Any],
                 run: Callable[[dict[str, Any]], Steps]) -> Plan:
    name = op.get("instance_name")
    inst = _existing(config, name)
    return Plan(locks=frozenset({_instance_lock(inst.name)}), run=run,
                fill={"instance_uuid": inst.uuid})


def _prepare_remove(config: ClusterConfig, op: dict[str, Any],
                    now: Callable[[], float]) -> Plan:
    def run(o: dict[str, Any]) -> Steps:
        _existing(config, o["instance_name"])
        if _dry_run(o):
            yield DRY_RUN_MESSAGE
            return None
        del config.instances[o["instance_name"]]
        return None
    return _simple_plan(config, op, run)


def _prepare_startup(config: ClusterConfig, op: dict[str, Any],
                     now: Callable[[], float]) -> Plan:
    def run(o: dict[str, Any]) -> Steps:
        inst = _existing(config, o["instance_name"])
        _check_hvparams(o.get("hvparams") or {}, inst.hypervisor)
        _normalise_beparams(o.get("beparams") or {})
        if not inst.oper_state:
            needed = inst.filled_beparams()["maxmem"]
            free = config.mfree(inst.pnode)
            if free < needed:
                raise prereq(f"Not enough memory on node {inst.pnode} for starting instance"
                             f" {inst.name}: needed {needed} MiB, available {free} MiB",
                             ECODE_NORES)
        if _dry_run(o):
            yield DRY_RUN_MESSAGE
            return None
        if not o.get("no_remember"):
            inst.admin_state = "up"
            inst.admin_state_source = "admin"
        if not inst.oper_state:
            inst.start()
        inst.touch(now())
        return None
    return _simple_plan(config, op, run)


def _prepare_shutdown(config: ClusterConfig, op: dict[str, Any],
                      now: Callable[[], float]) -> Plan:
    def run(o: dict[str, Any]) -> Steps:
        inst = _existing(config, o["instance_name"])
        if _dry_run(o):
            yield DRY_RUN_MESSAGE
            return None
        if not o.get("no_remember"):
            inst.admin_state = "down"
            inst.admin_state_source = o.get("admin_state_source") or "admin"
        inst.stop()
        inst.touch(now())
        return None
    plan = _simple_plan(config, op, run)
    return attrs.evolve(plan, fill={**plan.fill, "admin_state_source": "admin"})


def _prepare_reboot(config: ClusterConfig, op: dict[str, Any],
                    now: Callable[[], float]) -> Plan:
    def run(o: dict[str, Any]) -> Steps:
        inst = _existing(config, o["instance_name"])
        if _dry_run(o):
            yield DRY_RUN_MESSAGE
            return None
        if not inst.oper_state:
            needed = inst.filled_beparams()["maxmem"]
            free = config.mfree(inst.pnode)
            if free < needed:
                raise prereq(f"Not enough memory on node {inst.pnode} for starting instance"
                             f" {inst.name}: needed {needed} MiB, available {free} MiB",
                             ECODE_NORES)
            yield f" - INFO: Instance {inst.name} was already stopped, starting now"
        inst.stop()
        inst.start()
        inst.admin_state = "up"
        inst.touch(now())
        return None
    return _simple_plan(config, op, run)


# -- reinstall ----------------------------------------------------------------

def _prepare_reinstall(config: ClusterConfig, op: dict[str, Any],
                       now: Callable[[], float]) -> Plan:
    """``LUInstanceReinstall``: re-run the OS create script of a stopped
    instance that has disks, optionally with another OS.

    The instance's OS parameters become exactly ``osparams`` (not merged
    with the old ones; none given leaves ``{}``), as Ganeti 3.0 stores
    them.  RAPI's reinstall wraps this op between a shutdown and, unless
    ``start`` is false, a startup (see ``rapi``)."""
    def run(o: dict[str, Any]) -> Steps:
        inst = _existing(config, o["instance_name"])
        if not inst.disks:
            raise prereq(f"Instance '{inst.name}' has no disks", ECODE_INVAL)
        if inst.admin_state != "down":
            raise prereq(f"Instance '{inst.name}' is marked to be {inst.admin_state},"
                         " cannot reinstall", ECODE_STATE)
        if inst.oper_state:
            raise prereq(f"Instance {inst.name} is running, cannot reinstall", ECODE_STATE)
        for key in ("osparams", "osparams_private", "osparams_secret"):
            o[key] = o.get(key) or {}
        os_type = o.get("os_type")
        wanted = os_type or inst.os
        if wanted not in config.oses:
            raise OpError("OpExecError",
                          f"OS Parameters validation failed on node {inst.pnode}: Directory"
                          f" for OS {wanted.split('+')[0]} not found in search path")
        if _dry_run(o):
            yield DRY_RUN_MESSAGE
            return None
        if os_type is not None:
            yield f"Changing OS scripts to '{os_type}'..."
            inst.os = os_type
            inst.touch(now())
        inst.osparams = dict(o["osparams"])
        inst.touch(now())
        # The OS create script runs again on the primary node.
        yield " - INFO: Running instance OS create scripts..."
        return None
    return _simple_plan(config, op, run)


# -- migrate / failover ---------------------------------------------------------

#: Templates whose disks another node can reach: Ganeti's DTS_MIRRORED.
#: drbd is mirrored internally (to its secondary), the rest externally
#: (to any node: ``target_node`` or the iallocator's choice).
_INT_MIRROR = frozenset({"drbd"})
_EXT_MIRROR = frozenset({"diskless", "ext", "sharedfile", "rbd", "blockdev", "gluster"})


def _prepare_migration(config: ClusterConfig, op: dict[str, Any],
                       now: Callable[[], float]) -> Plan:
    """``LUInstanceMigrate`` / ``LUInstanceFailover`` (``TLMigrateInstance``).

    drbd instances swap primary and secondary; diskless and
    shared-storage ones move to ``target_node`` or to the node the
    iallocator picks; file and plain ones are refused ("Instance's disk
    layout 'file' does not allow migrations", wrong_state), as is a move
    onto the instance's own primary node.  The texts are Ganeti 3.0.2's.
    """
    target = op.get("target_node")
    plan = _simple_plan(config, op, lambda o: _run_migration(config, o, now))
    if target is not None:
        if target not in config.nodes:
            raise prereq(f"Node '{target}' not known", ECODE_NOENT)
        plan = attrs.evolve(plan, fill={**plan.fill,
                                        "target_node_uuid": config.nodes[target].uuid})
    return plan


def _run_migration(config: ClusterConfig, o: dict[str, Any],
                   now: Callable[[], float]) -> Steps:
    inst = _existing(config, o["instance_name"])
    failover = o["OP_ID"] == "OP_INSTANCE_FAILOVER"
    fallback = bool(o.get("allow_failover"))
    cleanup = bool(o.get("cleanup"))
    if not cleanup and inst.admin_state != "up" and not failover and fallback:
        yield (" - INFO: Instance is marked down or offline, fallback allowed, switching"
               " to failover")
        failover = True
    template = inst.disk_template
    if template not in _INT_MIRROR | _EXT_MIRROR:
        raise prereq(f"Instance's disk layout '{template}' does not allow"
                     f" {'failovers' if failover else 'migrations'}", ECODE_STATE)
    if template in _EXT_MIRROR:
        if o.get("target_node") is not None and o.get("iallocator") is not None:
            raise prereq("Do not specify both, iallocator and node", ECODE_INVAL)
        if o.get("target_node") is None and o.get("iallocator") is None:
            o["iallocator"] = config.iallocator
        if o.get("iallocator") is not None:
            target = _relocate(config, o["iallocator"], inst)
            yield (f" - INFO: Selected nodes for instance {inst.name} via iallocator"
                   f" {o['iallocator']}: {target}")
        else:
            target = o["target_node"]
        if target == inst.pnode:
            raise prereq(f"Cannot migrate instance {inst.name} to its primary ({inst.pnode})",
                         ECODE_STATE)
    else:
        target = inst.snodes[0]
        if o.get("iallocator") is not None or o.get("target_node") not in (None, target):
            raise prereq(f"Instances with disk types {template} cannot be"
                         f" {'failed over' if failover else 'migrated'} to arbitrary nodes"
                         " (neither an iallocator nor a target node can be passed)",
                         ECODE_INVAL)
    be = inst.filled_beparams()
    if not cleanup and (not failover or inst.admin_state == "up"):
        free = config.mfree(target)
        if free < be["minmem"]:
            raise prereq(f"Not enough memory on node {target} for migrating instance"
                         f" {inst.name}: needed {be['minmem']} MiB, available {free} MiB",
                         ECODE_NORES)
    else:
        yield (" - INFO: Not checking memory on the secondary node as instance will not"
               " be started")
    if not cleanup and not failover and be.get("always_failover"):
        yield " - INFO: Instance configured to always failover; fallback to failover"
        failover = True
    if not cleanup:
        if config.nodes[target].drained:
            raise prereq(f"Can't use drained node {target}", ECODE_STATE)
        if not failover and not inst.oper_state:
            if fallback:
                yield " - INFO: Can't migrate, instance offline, fallback to failover"
                failover = True
            else:
                raise prereq(f"Can't migrate, please use failover: Instance {inst.name} is"
                             " not running", ECODE_STATE)
    if not failover:
        if o.get("live") is not None and o.get("mode") is not None:
            raise prereq("Only one of the 'live' and 'mode' parameters are accepted",
                         ECODE_INVAL)
        if o.get("live") is not None:
            o["mode"] = "live" if o["live"] else "non-live"
            o["live"] = None
        elif o.get("mode") is None:
            o["mode"] = inst.hvparams.get("migration_mode", "live")
    if _dry_run(o):
        yield DRY_RUN_MESSAGE
        return None
    if failover:
        yield from _failover_steps(inst, target)
    elif cleanup:
        yield from _cleanup_steps(inst, target)
    else:
        yield from _migrate_steps(inst, target)
    inst.touch(now())
    return None


def _move(inst: Instance, target: str) -> None:
    """Make ``target`` the primary; a drbd instance's secondary becomes
    the old primary."""
    if inst.disk_template in _INT_MIRROR:
        inst.snodes = [inst.pnode]
    inst.pnode = target


def _failover_steps(inst: Instance, target: str) -> Steps:
    source = inst.pnode
    yield f"Failover instance {inst.name}"
    if inst.oper_state:
        yield "* checking disk consistency between source and target"
    else:
        yield "* not checking disk consistency as instance is not running"
    yield "* shutting down instance on source node"
    inst.stop()
    if inst.disk_template in _EXT_MIRROR:
        yield f"* closing instance disks on node {source}"
    yield "* deactivating the instance's disks on source node"
    _move(inst, target)
    # Only an instance marked up is started again.
    if inst.admin_state == "up":
        yield f"* activating the instance's disks on target node {target}"
        yield f"* starting the instance on the target node {target}"
        inst.start()


def _migrate_steps(inst: Instance, target: str) -> Steps:
    source = inst.pnode
    drbd = inst.disk_template in _INT_MIRROR
    yield f"Migrating instance {inst.name}"
    yield "* checking disk consistency between source and target"
    yield f"* closing instance disks on node {target}"
    if drbd:
        yield "* changing into standalone mode"
        yield "* changing disks into dual-master mode"
        yield "* wait until resync is done"
    yield f"* opening instance disks on node {source} in shared mode"
    yield f"* opening instance disks on node {target} in shared mode"
    yield f"* preparing {target} to accept the instance"
    yield f"* migrating instance to {target}"
    yield "* starting memory transfer"
    yield "* memory transfer complete"
    # The running instance keeps its memory and CPUs on the new node.
    _move(inst, target)
    yield f"* closing instance disks on node {source}"
    if drbd:
        yield "* wait until resync is done"
        yield "* changing into standalone mode"
        yield "* changing disks into single-master mode"
        yield "* wait until resync is done"
    else:
        yield f"* opening instance disks on node {target} in exclusive mode"
        if inst.disk_template == "ext":
            names = ", ".join(str(d.name) for d in inst.disks)
            yield f"* unmapping instance's disks {names} from {source}"
    yield "* done"


def _cleanup_steps(inst: Instance, target: str) -> Steps:
    """A cleanup after a failed migration: simulated migrations never
    fail half-way, so the instance is found where the configuration says."""
    yield f"Migrating instance {inst.name}"
    yield ("* checking where the instance actually runs (if this hangs, the hypervisor"
           " might be in a bad state)")
    if not inst.oper_state:
        yield "* instance running on: "
        raise OpError("OpExecError",
                      "Instance does not seem to be running at all; in this case it's safer"
                      " to repair by running 'gnt-instance stop' to ensure disk shutdown,"
                      " and then restarting it")
    yield f"* instance running on: {inst.pnode}"
    yield f"* instance confirmed to be running on its primary node ({inst.pnode})"
    yield f"* closing instance disks on node {target}"
    if inst.disk_template in _INT_MIRROR:
        yield "* wait until resync is done"
        yield "* changing into standalone mode"
        yield "* changing disks into single-master mode"
        yield "* wait until resync is done"
    else:
        yield f"* opening instance disks on node {inst.pnode} in exclusive mode"
    yield "* done"


# -- set params ---------------------------------------------------------------

_CHANGE_KEYS = ("nics", "disks", "beparams", "hvparams", "osparams", "osparams_private",
                "os_name", "disk_template", "runtime_mem", "offline", "ext_params",
                "instance_communication")


def _prepare_set_params(config: ClusterConfig, op: dict[str, Any],
                        now: Callable[[], float]) -> Plan:
    if not any(op.get(k) not in (None, {}, []) for k in _CHANGE_KEYS):
        raise prereq("No changes submitted", ECODE_INVAL)
    plan = _simple_plan(config, op, lambda o: _run_set_params(config, o, now))
    if op.get("nics"):
        plan = attrs.evolve(plan, locks=plan.locks | {GROUP_LOCK})
    return plan


def _find(items: list[Any], ident: Any, what: str) -> int:
    """Index of the NIC/disk named by ``ident``: an index (-1 = last), a
    name or a UUID."""
    if isinstance(ident, int) and not isinstance(ident, bool):
        index = ident if ident >= 0 else len(items) + ident
        if 0 <= index < len(items):
            return index
    elif isinstance(ident, str):
        if ident.lstrip("-").isdigit():
            return _find(items, int(ident), what)
        for index, item in enumerate(items):
            if ident in (item.name, item.uuid):
                return index
    raise prereq(f"Cannot find {what} with identifier {ident}", ECODE_NOENT)


def _mods(op: dict[str, Any], key: str) -> list[list[Any]]:
    mods = []
    for mod in op.get(key) or []:
        if len(mod) == 2:
            action, params = mod
            mod = [action, -1, params] if action in ("add", "remove") \
                else ["modify", action, params]
        if mod[0] not in ("add", "remove", "modify"):
            raise prereq(f"Invalid {key[:-1]} modification '{mod[0]}'", ECODE_INVAL)
        mods.append(mod)
    return mods


def _set_params(current: dict[str, Any], changes: dict[str, Any], prefix: str,
                result: list[list[Any]]) -> dict[str, Any]:
    out = dict(current)
    for key, value in changes.items():
        if value == "default":
            out.pop(key, None)
        else:
            out[key] = value
        result.append([f"{prefix}/{key}", value])
    return out


def _hotplug_failure(inst: Instance) -> str | None:
    """Why the primary node cannot hot-plug devices of ``inst`` (its
    ``hotplug_supported`` answer, Ganeti 3.0's texts), or None when it can:
    only KVM can, and only while the instance runs."""
    if inst.hypervisor != "kvm":
        reason = "Hotplug is not supported by this hypervisor"
    elif not inst.oper_state:
        reason = "Instance is probably down"
    else:
        return None
    return f"Hotplug is not supported: {reason}"


def _check_hotplug(inst: Instance, op: dict[str, Any]) -> Steps:
    """``LUInstanceSetParams._CheckHotplug``: with ``hotplug`` or
    ``hotplug_if_possible``, ask the node; where it can, ``hotplug``
    becomes true (written back into the op).  Where it cannot, ``hotplug``
    fails the op (wrong_state; Ganeti repeats the node's answer after its
    own text) and ``hotplug_if_possible`` warns and goes on without."""
    if not (op.get("hotplug") or op.get("hotplug_if_possible")):
        return
    failure = _hotplug_failure(inst)
    if failure is None:
        op["hotplug"] = True
    elif op.get("hotplug"):
        raise prereq(f"Hotplug is not possible: {failure}: {failure}", ECODE_STATE)
    else:
        yield f" - WARNING: {failure}"
        yield " - INFO: Modification will take place without hotplugging."
        op["hotplug"] = False


def _hotplug_device() -> Steps:
    """One device hot-plugged (added, removed or modified) by KVM: the log
    messages, and ``hotplug:done`` for the op result."""
    yield " - INFO: Trying to hotplug device..."
    yield " - INFO: Hotplug done."
    return "hotplug:done"


def _run_set_params(config: ClusterConfig, op: dict[str, Any],
                    now: Callable[[], float]) -> Steps:
    inst = _existing(config, op["instance_name"])
    result: list[list[Any]] = []
    group = config.group_uuid
    ignore_policy = bool(op.get("ignore_ipolicy"))
    yield from _check_hotplug(inst, op)
    hotplug = bool(op.get("hotplug"))
    if op.get("disk_template") is not None and op["disk_template"] != inst.disk_template:
        raise prereq("Disk template conversion is not implemented by the simulator",
                     ECODE_INVAL)
    beparams = inst.beparams
    if op.get("beparams"):
        changes = _normalise_beparams(op["beparams"])
        op["beparams"] = changes
        beparams = _set_params(inst.beparams, changes, "be", result)
        filled = config_be_defaults()
        filled.update(beparams)
        if filled["minmem"] > filled["maxmem"]:
            raise prereq("Minimum memory is greater than maximum memory", ECODE_INVAL)
        if not ignore_policy:
            for what, value in (("memory-size", filled["maxmem"]),
                                ("cpu-count", filled["vcpus"])):
                text = _violation(config, what, value, group)
                if text:
                    raise prereq(text, ECODE_INVAL)
    hvparams = inst.hvparams
    if op.get("hvparams"):
        _check_hvparams(op["hvparams"], inst.hypervisor)
        hvparams = _set_params(inst.hvparams, op["hvparams"], "hv", result)
    osparams = inst.osparams
    if op.get("osparams"):
        osparams = _set_params(inst.osparams, op["osparams"], "os", result)
    os_name = inst.os
    if op.get("os_name") and op["os_name"] != inst.os:
        if op["os_name"] not in config.oses:
            raise prereq(f"OS '{op['os_name']}' not in supported OS list for primary node"
                         f" {inst.pnode}", ECODE_INVAL)
        if inst.admin_state == "up" or inst.oper_state:
            raise prereq(f"Instance {inst.name} is marked to be up, cannot change OS",
                         ECODE_STATE)
        os_name = op["os_name"]
        result.append(["os", os_name])
    runtime_mem = op.get("runtime_mem")
    if runtime_mem is not None and not inst.oper_state:
        raise prereq(f"Instance {inst.name} is not running, cannot change its runtime"
                     " memory", ECODE_STATE)

    nics = list(inst.nics)
    nic_results: list[list[Any]] = []
    taken = _used_macs(config)
    pending: set[str] = set()
    for action, ident, params in _mods(op, "nics"):
        if action == "add":
            nic = _new_nic(config, dict(params), taken)
            # A NIC added later stores its filled nicparams as custom ones.
            nic.custom = {"mode": nic.mode, "link": nic.link, "vlan": nic.vlan}
            net = config.network_by_uuid(nic.network)
            if net is not None:
                yield from _attach_added_nic(config, net, nic, pending)
            position = len(nics) if ident == -1 else int(ident)
            nics.insert(position, nic)
            # Ganeti writes the generated MAC and a pool's address back
            # into the request.
            params_out = {k: v for k, v in params.items() if k != "mac"}
            if nic.ip is not None and "ip" in params_out:
                params_out["ip"] = nic.ip
            params_out["mac"] = nic.mac
            params.clear()
            params.update(params_out)
            nic_results.append([f"nic.{position}",
                                f"add:mac={nic.mac},ip={nic.ip},mode={nic.mode},"
                                f"link={nic.link},network={net.name if net else None}"])
            if hotplug:
                # Ganeti hot-plugs NICs while it checks the op, before the
                # disks (which it hot-plugs while it applies them).
                nic_results.append([f"nic.{position}", (yield from _hotplug_device())])
        elif action == "remove":
            index = _find(nics, ident, "NIC")
            del nics[index]
            nic_results.append([f"NIC/{index}", "remove"])
            if hotplug:
                nic_results.append([f"NIC/{index}", (yield from _hotplug_device())])
        else:
            index = _find(nics, ident, "NIC")
            old = nics[index]
            changes = dict(params)
            for key in changes:
                if key not in ("mac", "ip", "mode", "link", "network", "name", "vlan"):
                    raise prereq(f"Invalid NIC parameter '{key}'", ECODE_INVAL)
            given_network = changes.get("network")
            if "network" in changes:
                net = _nic_network(config, {**changes, "ip": changes.get("ip", old.ip)})
                changes["network"] = None if net is None else net.uuid
            else:
                net = config.network_by_uuid(old.network)
            if net is not None and (changes.get("network", old.network) != old.network
                                    or "ip" in changes):
                probe = attrs.evolve(old, ip=changes.get("ip", old.ip))
                if probe.ip is not None and probe.ip.lower() == "pool":
                    probe.ip = "pool"
                yield from _attach_added_nic(config, net, probe, pending)
                changes.update(mode=probe.mode, link=probe.link, vlan=probe.vlan,
                               ip=probe.ip)
            elif isinstance(changes.get("ip"), str) and changes["ip"].lower() == "pool":
                raise prereq("ip=pool, but no network found", ECODE_INVAL)
            if "ip" in changes and changes["ip"] is not None:
                if str(changes["ip"]).lower() == "none":
                    changes["ip"] = None
                else:
                    try:
                        ipaddress.ip_address(changes["ip"])
                    except ValueError:
                        raise prereq(f"Invalid IP address '{changes['ip']}'",
                                     ECODE_INVAL) from None
            if "mac" in changes:
                mac = str(changes["mac"]).lower()
                if not _MAC_RE.match(mac):
                    raise prereq(f"Invalid MAC address specified: {mac}", ECODE_INVAL)
                if mac != old.mac and mac in taken:
                    raise prereq(f"MAC address {mac} already in use in cluster",
                                 ECODE_NOTUNIQUE)
                changes["mac"] = mac
            new = attrs.evolve(old, **{k: v for k, v in changes.items()
                                       if k in ("mac", "ip", "name", "network", "mode",
                                                "link", "vlan")})
            new.custom = {"mode": new.mode, "link": new.link, "vlan": new.vlan}
            nics[index] = new
            if "network" in changes:
                changes["network"] = given_network
            for key in ("mac", "ip", "name", "network"):
                if key in changes:
                    nic_results.append([f"nic.{key}/{index}", changes[key]])
            nic_results += [[f"nic.link/{index}", new.link], [f"nic.mode/{index}", new.mode],
                            [f"nic.vlan/{index}", new.vlan]]
            if hotplug:
                nic_results.append([f"nic/{index}", (yield from _hotplug_device())])
    if op.get("nics") and not ignore_policy:
        low, high = _policy_range(config, "nic-count")
        if not low <= len(nics) <= high:
            raise prereq(f"Instance allocation to group {_group_repr(config)} (default)"
                         f" violates policy: nic-count value {len(nics)} is not in range"
                         f" [{low}, {high}]", ECODE_INVAL)

    disks = list(inst.disks)
    # Per disk change: its result entries, and the entry name of its hotplug
    # (None: none), which happens only once the change is applied.
    disk_changes: list[tuple[list[list[Any]], str | None]] = []
    added = 0
    for action, ident, params in _mods(op, "disks"):
        if inst.disk_template == "diskless" and action != "modify":
            raise prereq("Must specify disk type on diskless instance", ECODE_INVAL)
        if action == "add":
            size = params.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise prereq("Missing or invalid disk size", ECODE_INVAL)
            if not ignore_policy:
                text = _violation(config, "disk-size", size, group)
                if text:
                    raise prereq(text, ECODE_INVAL)
            position = len(disks) if ident == -1 else int(ident)
            mode = params.get("mode", "rw")
            disks.insert(position, Disk(uuid=new_uuid(), size=size, name=params.get("name"),
                                        mode=mode))
            added += size
            disk_changes.append(([[f"disk/{position}", f"add:size={size},mode={mode}"]],
                                 f"disk/{position}" if hotplug else None))
        elif action == "remove":
            index = _find(disks, ident, "disk")
            if inst.admin_state == "up" and not hotplug:
                # Ganeti 3.0's LUInstanceSetParams: a disk leaves a running
                # instance only by hotplug.
                raise prereq(f"Instance '{inst.name}' is marked to be up, can't remove"
                             " volume from a running instance without using hotplug",
                             ECODE_STATE)
            del disks[index]
            disk_changes.append(([[f"disk/{index}", "remove"]],
                                 f"disk/{index}" if hotplug else None))
        else:
            index = _find(disks, ident, "disk")
            entries = []
            for key, value in params.items():
                if key not in ("name", "mode"):
                    raise prereq(f"Disk parameter '{key}' cannot be modified", ECODE_INVAL)
                setattr(disks[index], key, value)
                entries.append([f"disk.{key}/{index}", value])
            disk_changes.append((entries, None))
    if op.get("disks") and inst.disk_template != "diskless" and not ignore_policy:
        low, high = _policy_range(config, "disk-count")
        if not low <= len(disks) <= high:
            raise prereq(f"Instance allocation to group {_group_repr(config)} (default)"
                         f" violates policy: disk-count value {len(disks)} is not in range"
                         f" [{low}, {high}]", ECODE_INVAL)
    for node in [inst.pnode, *inst.snodes]:
        if added and config.dfree(node) < added:
            raise prereq(f"Not enough disk space on target node {node}: required {added}"
                         f" MiB, available {config.dfree(node)} MiB", ECODE_NORES)

    if _dry_run(op):
        yield DRY_RUN_MESSAGE
        return None
    disk_results: list[list[Any]] = []
    for entries, hotplugged in disk_changes:
        disk_results += entries
        if hotplugged is not None:
            disk_results.append([hotplugged, (yield from _hotplug_device())])
    inst.beparams = beparams
    inst.hvparams = hvparams
    inst.osparams = osparams
    inst.os = os_name
    inst.nics = nics
    inst.disks = disks
    if runtime_mem is not None:
        inst.oper_ram = runtime_mem
        result.append(["runtime_memory", runtime_mem])
    inst.touch(now())
    return nic_results + disk_results + result


# -- tags, queries ------------------------------------------------------------

def _prepare_tags(config: ClusterConfig, op: dict[str, Any], now: Callable[[], float]) -> Plan:
    kind = op.get("kind")
    if kind == "instance":
        inst = _existing(config, op.get("name"))
        locks = frozenset({_instance_lock(inst.name)})
    elif kind == "cluster":
        locks = frozenset()
    else:
        raise prereq(f"Tags of kind '{kind}' are not implemented by the simulator",
                     ECODE_INVAL)

    def run(o: dict[str, Any]) -> Steps:
        if kind == "instance":
            target = _existing(config, o.get("name"))
            current = target.tags
        else:
            current = config.tags
        tags = list(o.get("tags") or [])
        if o["OP_ID"] == "OP_TAGS_SET":
            for tag in tags:
                check_tag(tag)
            new = current + [t for t in dict.fromkeys(tags) if t not in current]
            if len(new) > MAX_TAGS_PER_OBJ:
                raise OpError("TagError", "Too many tags")
        else:
            missing = [t for t in dict.fromkeys(tags) if t not in current]
            if missing:
                names = ", ".join(f"'{t}'" for t in missing)
                raise prereq(f"Tag(s) {names} not found", ECODE_NOENT)
            new = [t for t in current if t not in tags]
        if _dry_run(o):
            yield DRY_RUN_MESSAGE
            return None
        if kind == "instance":
            target.tags = new
            target.touch(now())
        else:
            config.tags = new
            config.mtime = now()
        return None

    return Plan(locks=locks, run=run)


def instance_info(config: ClusterConfig, inst: Instance, static: bool) -> dict[str, Any]:
    """One instance in an ``OP_INSTANCE_QUERY_DATA`` result."""
    be = inst.filled_beparams()
    be.pop("memory", None)
    run_state = None if static else ("up" if inst.oper_state else "down")
    return {
        "name": inst.name,
        "config_state": inst.admin_state,
        "run_state": run_state,
        "pnode": inst.pnode,
        "pnode_group_uuid": config.group_uuid,
        "pnode_group_name": "default",
        "snodes": list(inst.snodes),
        "snodes_group_uuids": [config.group_uuid for _ in inst.snodes],
        "snodes_group_names": ["default" for _ in inst.snodes],
        "os": inst.os,
        "nics": [[n.name, n.uuid, n.ip, n.mac, n.mode, n.link, n.vlan, n.network, None]
                 for n in inst.nics],
        "disk_template": inst.disk_template,
        "disks": [{"iv_name": f"disk/{i}", "dev_type": inst.disk_template, "size": d.size,
                   "mode": d.mode, "name": d.name, "uuid": d.uuid, "spindles": d.spindles,
                   "pstatus": None, "sstatus": None, "children": []}
                  for i, d in enumerate(inst.disks)],
        "hypervisor": inst.hypervisor,
        "network_port": inst.network_port,
        "hv_instance": dict(inst.hvparams),
        "hv_actual": dict(inst.hvparams),
        "be_instance": dict(inst.beparams),
        "be_actual": dict(sorted(be.items())),
        "os_instance": dict(inst.osparams),
        "os_actual": dict(inst.osparams),
        "serial_no": inst.serial_no,
        "mtime": inst.mtime,
        "ctime": inst.ctime,
        "uuid": inst.uuid,
    }


def _prepare_query_data(config: ClusterConfig, op: dict[str, Any],
                        now: Callable[[], float]) -> Plan:
    names = op.get("instances") or sorted(config.instances)
    for name in names:
        _existing(config, name)
    static = bool(op.get("static"))

    def run(o: dict[str, Any]) -> Steps:
        if not static:
            yield " - WARNING: Non-static data requested, locks need to be acquired"
        result = {}
        for name in names:
            result[name] = instance_info(config, _existing(config, name), static)
        return result

    return Plan(locks=frozenset(), run=run, fill={"use_locking": not static})


def _prepare_os_diagnose(config: ClusterConfig, op: dict[str, Any],
                         now: Callable[[], float]) -> Plan:
    def run(o: dict[str, Any]) -> Steps:
        variants: dict[str, list[str]] = {}
        for full in config.oses:
            name, _, variant = full.partition("+")
            variants.setdefault(name, [])
            if variant:
                variants[name].append(variant)
        fields = o.get("output_fields") or ["name", "variants"]
        rows = []
        for name, names in variants.items():
            row = {"name": name, "variants": names, "valid": True, "hidden": False,
                   "blacklisted": False}
            rows.append([row.get(f) for f in fields])
        return rows
        yield  # a generator without log messages

    return Plan(locks=frozenset(), run=run)


