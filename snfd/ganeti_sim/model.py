"""The simulated cluster's configuration: nodes, instances, their NICs and
disks, and how RAPI shows them.

Field names and value shapes follow Ganeti 3.0's RAPI (``GET
/2/instances?bulk=1``, ``GET /2/nodes?bulk=1``, ``GET /2/info``) as measured
on a real cluster with the fake hypervisor; a cluster may present ``kvm``
instead (``ClusterConfig.hypervisor``).  Node resources are accounted
from the instances: ``mfree`` is the node memory minus what its running
instances use, ``dfree`` the node disk minus the disks of instances on it
(primary or, for drbd, secondary), and ``pinst_cnt``/``sinst_cnt`` count them.

Everything here is plain data plus ``to_json``/``from_json`` so the whole
configuration can be saved as one JSON document.
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

SOFTWARE_VERSION = "3.0.2"
DEFAULT_LINK = "gntbr0"
DEFAULT_IALLOCATOR = "hail"
MAC_PREFIX = "aa:00:00"
BRIDGED = "bridged"

# Cluster-level defaults of the backend parameters (Ganeti's defaults).
BE_DEFAULTS: dict[str, Any] = {
    "minmem": 128, "maxmem": 128, "vcpus": 1, "auto_balance": True,
    "always_failover": False, "spindle_use": 1,
}
BE_KEYS = frozenset(BE_DEFAULTS) | {"memory"}

#: The hypervisors a simulated cluster can present (``[ganeti-sim]
#: hypervisor``): Ganeti's ``fake``, or ``kvm`` as a production cluster.
HYPERVISORS = ("fake", "kvm")

# The fake hypervisor declares one parameter.
HV_KEYS = frozenset({"migration_mode"})

#: The parameters each hypervisor declares (Ganeti 3.0's ``HVC_DEFAULTS``
#: keys, ``src/Ganeti/Constants.hs``); a key outside the instance's
#: hypervisor's set is refused as unknown.
HV_PARAMETERS: dict[str, frozenset[str]] = {
    "fake": HV_KEYS,
    "kvm": frozenset({
        "kvm_path", "kernel_path", "initrd_path", "kernel_args", "root_path", "acpi",
        "serial_console", "serial_speed", "vnc_bind_address", "vnc_tls", "vnc_x509_path",
        "vnc_x509_verify", "vnc_password_file", "scsi_controller_type",
        "kvm_pci_reservations", "spice_bind", "spice_ip_version", "spice_password_file",
        "spice_image_compression", "spice_jpeg_wan_compression",
        "spice_zlib_glz_wan_compression", "spice_streaming_video",
        "spice_playback_compression", "spice_use_tls", "spice_tls_ciphers",
        "spice_use_vdagent", "floppy_image_path", "cdrom_image_path",
        "cdrom2_image_path", "boot_order", "nic_type", "disk_type", "cdrom_disk_type",
        "disk_aio", "usb_mouse", "keymap", "migration_port", "migration_bandwidth",
        "migration_downtime", "migration_mode", "use_guest_agent", "use_localtime",
        "disk_cache", "disk_discard", "security_model", "security_domain", "kvm_flag",
        "vhost_net", "virtio_net_queues", "use_chroot", "user_shutdown", "mem_path",
        "reboot_behavior", "cpu_mask", "cpu_type", "cpu_cores", "cpu_threads",
        "cpu_sockets", "soundhw", "usb_devices", "vga", "kvm_extra", "machine_version",
        "migration_caps", "vnet_hdr",
    }),
}

#: The cluster's hvparams as ``GET /2/info`` shows them, for the keys the
#: simulator models: both hypervisors migrate ``live`` by default.
HV_DEFAULTS: dict[str, dict[str, Any]] = {
    "fake": {"migration_mode": "live"},
    "kvm": {"migration_mode": "live"},
}

# Ganeti's default instance policy.
DEFAULT_IPOLICY: dict[str, Any] = {
    "minmax": [{
        "min": {"memory-size": 128, "disk-size": 1024, "disk-count": 1, "cpu-count": 1,
                "nic-count": 1, "spindle-use": 1},
        "max": {"memory-size": 32768, "disk-size": 1024 * 1024, "disk-count": 16,
                "cpu-count": 8, "nic-count": 8, "spindle-use": 12},
    }],
    "std": {"memory-size": 128, "disk-size": 1024, "disk-count": 1, "cpu-count": 1,
            "nic-count": 1, "spindle-use": 1},
    "disk-templates": ["drbd", "plain", "sharedfile", "file", "diskless", "ext", "rbd",
                       "blockdev", "gluster"],
    "vcpu-ratio": 4.0,
    "spindle-ratio": 32.0,
}

NDPARAMS: dict[str, Any] = {
    "oob_program": "", "spindle_count": 1, "exclusive_storage": False, "ovs": False,
    "ovs_name": "switch1", "ovs_link": "", "ssh_port": 22, "cpu_speed": 1,
}

# drbd keeps 128 MiB of metadata per disk on each of its two nodes.
DRBD_META_SIZE = 128


def new_uuid() -> str:
    """A random UUID in Ganeti's textual form."""
    return str(uuid.uuid4())


@attrs.define
class Nic:
    """One instance NIC.  ``custom`` is the nicparams given by the client
    (``mode``, ``link``, ``vlan``), as ``custom_nicparams`` shows them."""

    uuid: str
    mac: str
    name: str | None = None
    ip: str | None = None
    network: str | None = None
    mode: str = BRIDGED
    link: str = DEFAULT_LINK
    vlan: str = ""
    custom: dict[str, Any] = attrs.Factory(dict)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Nic:
        return cls(**data)


class PoolError(Exception):
    """An address pool refused a reservation; ``str()`` is Ganeti's text
    (``AddressPoolError``)."""


#: Ganeti keeps pools for IPv4 networks from /16 to /30 only.
POOL_MAX_PREFIX = 30
POOL_MIN_PREFIX = 16


@attrs.define
class Network:
    """A Ganeti network: an IPv4 subnet with an address pool.

    ``external`` are the external reservations (the network and broadcast
    addresses, the gateway, ``add_reserved_ips``), as Ganeti's
    ``ext_reservations``; addresses used by NICs are not stored here but
    derived from the instances (``ClusterConfig.network_ips``), so removing
    a NIC or an instance releases its address by construction.
    """

    name: str
    uuid: str
    network: str
    ctime: float
    mtime: float
    gateway: str | None = None
    network6: str | None = None
    gateway6: str | None = None
    mac_prefix: str | None = None
    external: list[str] = attrs.Factory(list)
    serial_no: int = 1
    tags: list[str] = attrs.Factory(list)

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.network)

    def check_pool(self) -> None:
        """Raise ``PoolError`` as Ganeti's ``AddressPool`` does for a subnet
        it will not manage, or a gateway outside it."""
        net = self.subnet
        if net.prefixlen < POOL_MIN_PREFIX:
            raise PoolError(f"A big network with {net.num_addresses} host(s) is currently"
                            f" not supported. please specify at most a /{POOL_MIN_PREFIX}"
                            " network")
        if net.prefixlen > POOL_MAX_PREFIX:
            raise PoolError(f"A network with only {net.num_addresses} host(s) is too small,"
                            f" please specify at least a /{POOL_MAX_PREFIX} network")

    def contains(self, address: str | None) -> bool:
        try:
            return address is not None and ipaddress.ip_address(address) in self.subnet
        except ValueError:
            return False

    def reserve_external(self, address: str) -> None:
        """Add an external reservation (``PoolError`` if outside or taken)."""
        if not self.contains(address):
            raise PoolError(f"{self.network} does not contain {address}")
        address = str(ipaddress.ip_address(address))
        if address in self.external:
            raise PoolError(f"IP {address} is already externally reserved")
        self.external.append(address)

    def initialise(self) -> None:
        """Reserve the network and broadcast addresses and the gateway, as
        ``AddressPool.InitializeNetwork`` (``PoolError`` as it raises)."""
        self.check_pool()
        net = self.subnet
        self.reserve_external(str(net[0]))
        self.reserve_external(str(net[-1]))
        if self.gateway is not None:
            self.reserve_external(self.gateway)

    def external_sorted(self) -> list[str]:
        return sorted(self.external, key=ipaddress.ip_address)

    def view(self, used: set[str], groups: list[list[str]],
             instances: list[str]) -> dict[str, Any]:
        """The network as ``GET /2/networks/<name>`` shows it, given the
        addresses NICs use, its group connections and its instances."""
        net = self.subnet
        taken = set(self.external) | used
        bitmap = "".join("X" if str(a) in taken else "." for a in net)
        reserved = bitmap.count("X")
        return {
            "name": self.name,
            "network": self.network,
            "gateway": self.gateway,
            "network6": self.network6,
            "gateway6": self.gateway6,
            "mac_prefix": self.mac_prefix,
            "free_count": net.num_addresses - reserved,
            "reserved_count": reserved,
            "map": bitmap,
            "group_list": groups,
            "inst_list": instances,
            "external_reservations": ", ".join(self.external_sorted()),
            "ctime": self.ctime,
            "mtime": self.mtime,
            "uuid": self.uuid,
            "serial_no": self.serial_no,
            "tags": list(self.tags),
        }

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        return cls(**data)


@attrs.define
class Disk:
    """One instance disk; ``size`` in MiB."""

    uuid: str
    size: int
    name: str | None = None
    mode: str = "rw"
    spindles: int | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Disk:
        return cls(**data)


@attrs.define
class Instance:
    """A virtual machine as the cluster configuration holds it.

    ``admin_state`` is what the administrator asked for ("up"/"down");
    ``oper_state`` whether the (simulated) hypervisor runs it.  ``oper_ram`` and
    ``oper_vcpus`` are the values it was started with: a beparams change
    shows in ``beparams`` at once but in these only after a restart.
    """

    name: str
    uuid: str
    os: str
    pnode: str
    disk_template: str
    ctime: float
    mtime: float
    snodes: list[str] = attrs.Factory(list)
    hypervisor: str = "fake"
    nics: list[Nic] = attrs.Factory(list)
    disks: list[Disk] = attrs.Factory(list)
    beparams: dict[str, Any] = attrs.Factory(dict)      # custom (given) values only
    hvparams: dict[str, Any] = attrs.Factory(dict)
    osparams: dict[str, Any] = attrs.Factory(dict)
    tags: list[str] = attrs.Factory(list)
    admin_state: str = "down"
    admin_state_source: str = "admin"
    oper_state: bool = False
    oper_ram: int | None = None
    oper_vcpus: int | None = None
    serial_no: int = 1
    network_port: int | None = None

    def filled_beparams(self) -> dict[str, Any]:
        """The effective backend parameters (cluster defaults + custom),
        with ``memory`` = ``maxmem`` as RAPI adds it."""
        be = dict(BE_DEFAULTS)
        be.update(self.beparams)
        be["memory"] = be["maxmem"]
        return be

    def disk_usage(self) -> int:
        """MiB this instance takes on each of its nodes."""
        if self.disk_template == "diskless":
            return 0
        total = sum(d.size for d in self.disks)
        if self.disk_template == "drbd":
            total += DRBD_META_SIZE * len(self.disks)
        return total

    def status(self) -> str:
        """Ganeti's combined status: running, ADMIN_down, ERROR_down, ERROR_up."""
        if self.admin_state == "up":
            return "running" if self.oper_state else "ERROR_down"
        if self.oper_state:
            return "ERROR_up"
        return "ADMIN_down"

    def start(self) -> None:
        """Mark it running with its current memory and CPUs."""
        be = self.filled_beparams()
        self.oper_state = True
        self.oper_ram = be["maxmem"]
        self.oper_vcpus = be["vcpus"]

    def stop(self) -> None:
        """Mark it not running."""
        self.oper_state = False
        self.oper_ram = None
        self.oper_vcpus = None

    def touch(self, now: float) -> None:
        """Record a configuration change."""
        self.serial_no += 1
        self.mtime = now

    def bulk(self, network_names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The instance as ``GET /2/instances?bulk=1`` shows it.

        ``nic.networks`` holds the network UUIDs, ``nic.networks.names``
        their names (``network_names``: uuid -> name), as real Ganeti."""
        names = network_names or {}
        return {
            "name": self.name,
            "admin_state": self.admin_state,
            "os": self.os,
            "pnode": self.pnode,
            "snodes": list(self.snodes),
            "disk_template": self.disk_template,
            "nic.ips": [n.ip for n in self.nics],
            "nic.macs": [n.mac for n in self.nics],
            "nic.modes": [n.mode for n in self.nics],
            "nic.uuids": [n.uuid for n in self.nics],
            "nic.names": [n.name for n in self.nics],
            "nic.links": [n.link for n in self.nics],
            "nic.networks": [n.network for n in self.nics],
            "nic.networks.names": [names.get(n.network, n.network) if n.network else None
                                   for n in self.nics],
            "nic.bridges": [n.link if n.mode == BRIDGED else None for n in self.nics],
            "network_port": self.network_port,
            "disk.sizes": [d.size for d in self.disks],
            "disk.spindles": [d.spindles for d in self.disks],
            "disk_usage": self.disk_usage(),
            "disk.uuids": [d.uuid for d in self.disks],
            "disk.names": [d.name for d in self.disks],
            "beparams": self.filled_beparams(),
            "hvparams": dict(self.hvparams),
            "oper_state": self.oper_state,
            "oper_ram": self.oper_ram,
            "oper_vcpus": self.oper_vcpus,
            "status": self.status(),
            "custom_hvparams": dict(self.hvparams),
            "custom_beparams": dict(self.beparams),
            "custom_nicparams": [dict(n.custom) for n in self.nics],
            "ctime": self.ctime,
            "mtime": self.mtime,
            "uuid": self.uuid,
            "serial_no": self.serial_no,
            "tags": list(self.tags),
        }

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["nics"] = [n.to_json() for n in self.nics]
        data["disks"] = [d.to_json() for d in self.disks]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        data = dict(data)
        data["nics"] = [Nic.from_json(n) for n in data.get("nics", [])]
        data["disks"] = [Disk.from_json(d) for d in data.get("disks", [])]
        return cls(**data)


@attrs.define
class Node:
    """A cluster node; memory and disk in MiB."""

    name: str
    uuid: str
    pip: str
    memory: int
    disk: int
    cpus: int
    ctime: float
    master: bool = False
    offline: bool = False
    drained: bool = False
    vm_capable: bool = True
    tags: list[str] = attrs.Factory(list)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        return cls(**data)


@attrs.define
class ClusterConfig:
    """The whole simulated configuration: cluster identity, nodes, instances."""

    name: str
    uuid: str
    ctime: float
    group_uuid: str
    nodes: dict[str, Node]
    instances: dict[str, Instance] = attrs.Factory(dict)
    oses: tuple[str, ...] = ("snf-image+default", "noop+default")
    disk_templates: tuple[str, ...] = ("diskless", "file", "plain", "drbd", "ext")
    max_running_jobs: int = 20
    ipolicy: dict[str, Any] = attrs.Factory(lambda: dict(DEFAULT_IPOLICY))
    #: Networks by name, and the default group's connections:
    #: network uuid -> {"mode", "link", "vlan"} (Ganeti's netparams).
    networks: dict[str, Network] = attrs.Factory(dict)
    group_networks: dict[str, dict[str, str]] = attrs.Factory(dict)
    group_mtime: float = 0.0
    group_serial: int = 1
    iallocator: str = DEFAULT_IALLOCATOR
    mtime: float = 0.0
    tags: list[str] = attrs.Factory(list)
    #: The one enabled (and default) hypervisor, one of ``HYPERVISORS``.
    hypervisor: str = "fake"

    @classmethod
    def new(cls, name: str, now: float, *, nodes: int, node_memory: int, node_disk: int,
            node_cpus: int) -> ClusterConfig:
        """A fresh cluster named ``name`` with ``nodes`` nodes called
        ``node1.<name>``, ``node2.<name>``, ... (node1 is the master)."""
        members: dict[str, Node] = {}
        for i in range(1, nodes + 1):
            node = Node(name=f"node{i}.{name}", uuid=new_uuid(), pip=f"127.0.0.{i}",
                        memory=node_memory, disk=node_disk, cpus=node_cpus, ctime=now,
                        master=(i == 1))
            members[node.name] = node
        return cls(name=name, uuid=new_uuid(), ctime=now, group_uuid=new_uuid(),
                   nodes=members, mtime=now)

    # -- accounting -------------------------------------------------------
    def primaries(self, node: str) -> list[Instance]:
        return [i for i in self.instances.values() if i.pnode == node]

    def secondaries(self, node: str) -> list[Instance]:
        return [i for i in self.instances.values() if node in i.snodes]

    def mfree(self, node: str) -> int:
        """Free memory: node memory minus what its running instances use."""
        used = sum(i.oper_ram or 0 for i in self.primaries(node) if i.oper_state)
        return self.nodes[node].memory - used

    def dfree(self, node: str) -> int:
        """Free disk: node disk minus the disks of its primary and secondary instances."""
        used = sum(i.disk_usage() for i in self.primaries(node))
        used += sum(i.disk_usage() for i in self.secondaries(node))
        return self.nodes[node].disk - used

    def vcpus_used(self, node: str) -> int:
        return sum(i.filled_beparams()["vcpus"] for i in self.primaries(node))

    def new_mac(self, prefix: str | None = None) -> str:
        """A MAC under ``prefix`` (default the cluster's) that no NIC uses yet."""
        used = {n.mac for i in self.instances.values() for n in i.nics}
        while True:
            tail = secrets.token_bytes(3)
            mac = (prefix or MAC_PREFIX) + ":" + ":".join(f"{b:02x}" for b in tail)
            if mac not in used:
                return mac

    # -- networks ---------------------------------------------------------
    GROUP = "default"

    def network_by_uuid(self, net_uuid: str | None) -> Network | None:
        return next((n for n in self.networks.values() if n.uuid == net_uuid), None)

    def network_names(self) -> dict[str, str]:
        """uuid -> name of every network."""
        return {n.uuid: n.name for n in self.networks.values()}

    def network_ips(self, net_uuid: str) -> set[str]:
        """Addresses NICs on the network use."""
        return {n.ip for i in self.instances.values() for n in i.nics
                if n.network == net_uuid and n.ip}

    def network_instances(self, net_uuid: str) -> list[str]:
        return sorted(i.name for i in self.instances.values()
                      if any(n.network == net_uuid for n in i.nics))

    def network_view(self, name: str) -> dict[str, Any]:
        """``GET /2/networks/<name>``."""
        net = self.networks[name]
        params = self.group_networks.get(net.uuid)
        groups = [] if params is None else [
            [self.GROUP, params["mode"], params["link"], params["vlan"]]]
        return net.view(self.network_ips(net.uuid), groups, self.network_instances(net.uuid))

    def group_view(self) -> dict[str, Any]:
        """The one node group as ``GET /2/groups?bulk=1`` shows it."""
        return {
            "alloc_policy": "preferred",
            "name": self.GROUP,
            "node_cnt": len(self.nodes),
            "node_list": sorted(self.nodes),
            "ipolicy": self.ipolicy,
            "custom_ipolicy": {},
            "diskparams": {t: {} for t in self.disk_templates},
            "custom_diskparams": {},
            "ndparams": dict(NDPARAMS),
            "custom_ndparams": {},
            "ctime": 0,
            "mtime": self.group_mtime or self.ctime,
            "uuid": self.group_uuid,
            "serial_no": self.group_serial,
            "tags": [],
        }

    # -- RAPI views -------------------------------------------------------
    def node_bulk(self, name: str) -> dict[str, Any]:
        """The node as ``GET /2/nodes?bulk=1`` shows it."""
        node = self.nodes[name]
        return {
            "name": node.name,
            "offline": node.offline,
            "master_candidate": True,
            "drained": node.drained,
            "dtotal": node.disk,
            "dfree": self.dfree(name),
            "sptotal": None,
            "spfree": None,
            "mtotal": node.memory,
            "mnode": 0,
            "mfree": self.mfree(name),
            "pinst_cnt": len(self.primaries(name)),
            "sinst_cnt": len(self.secondaries(name)),
            "ctotal": node.cpus,
            "cnos": node.cpus,
            "cnodes": 1,
            "csockets": 1,
            "pip": node.pip,
            "sip": node.pip,
            "role": "M" if node.master else "C",
            "pinst_list": sorted(i.name for i in self.primaries(name)),
            "sinst_list": sorted(i.name for i in self.secondaries(name)),
            "master_capable": True,
            "vm_capable": node.vm_capable,
            "ndparams": dict(NDPARAMS),
            "group.uuid": self.group_uuid,
            "ctime": node.ctime,
            "mtime": node.ctime,
            "uuid": node.uuid,
            "serial_no": 1,
            "tags": list(node.tags),
        }

    @property
    def master(self) -> str:
        return next(n.name for n in self.nodes.values() if n.master)

    def info(self) -> dict[str, Any]:
        """``GET /2/info``."""
        return {
            "software_version": SOFTWARE_VERSION,
            "protocol_version": 3000000,
            "config_version": 3000000,
            "os_api_version": 20,
            "export_version": 0,
            "vcs_version": f"(ganeti) version {SOFTWARE_VERSION} (snfd simulator)",
            "architecture": ["64bits", "x86_64"],
            "name": self.name,
            "master": self.master,
            "default_hypervisor": self.hypervisor,
            "enabled_hypervisors": [self.hypervisor],
            "hvparams": {self.hypervisor: dict(HV_DEFAULTS[self.hypervisor])},
            "os_hvp": {},
            "beparams": {"default": dict(BE_DEFAULTS)},
            "osparams": {},
            "ipolicy": self.ipolicy,
            "nicparams": {"default": {"mode": BRIDGED, "link": DEFAULT_LINK, "vlan": ""}},
            "ndparams": dict(NDPARAMS),
            "diskparams": {t: {} for t in self.disk_templates},
            "candidate_pool_size": 10,
            "max_running_jobs": self.max_running_jobs,
            "max_tracked_jobs": 25,
            "mac_prefix": MAC_PREFIX,
            "master_netdev": DEFAULT_LINK,
            "master_netmask": 32,
            "use_external_mip_script": False,
            "volume_group_name": None,
            "drbd_usermode_helper": None,
            "file_storage_dir": "/srv/ganeti/file-storage",
            "shared_file_storage_dir": "/srv/ganeti/shared-file-storage",
            "gluster_storage_dir": "/var/run/ganeti/gluster",
            "maintain_node_health": False,
            "ctime": self.ctime,
            "mtime": self.mtime,
            "uuid": self.uuid,
            "tags": list(self.tags),
            "uid_pool": [],
            "default_iallocator": self.iallocator,
            "default_iallocator_params": {},
            "reserved_lvs": [],
            "primary_ip_version": 4,
            "prealloc_wipe_disks": False,
            "hidden_os": [],
            "blacklisted_os": [],
            "enabled_disk_templates": list(self.disk_templates),
            "install_image": "",
            "instance_communication_network": "",
            "zeroing_image": "",
            "compression_tools": ["gzip", "gzip-fast", "gzip-slow"],
            "enabled_user_shutdown": False,
            "modify_ssh_setup": False,
            "ssh_key_type": "rsa",
            "ssh_key_bits": 2048,
            "vg_name": None,
            "drbd_helper": None,
        }

    # -- persistence ------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "ctime": self.ctime,
            "mtime": self.mtime,
            "group_uuid": self.group_uuid,
            "tags": list(self.tags),
            "nodes": [n.to_json() for n in self.nodes.values()],
            "instances": [i.to_json() for i in self.instances.values()],
            "networks": [n.to_json() for n in self.networks.values()],
            "group_networks": {k: dict(v) for k, v in self.group_networks.items()},
            "group_mtime": self.group_mtime,
            "group_serial": self.group_serial,
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take identity, nodes and instances from a saved ``to_json``."""
        self.uuid = data["uuid"]
        self.ctime = data["ctime"]
        self.mtime = data.get("mtime", self.ctime)
        self.group_uuid = data["group_uuid"]
        self.tags = list(data.get("tags", []))
        self.nodes = {n["name"]: Node.from_json(n) for n in data["nodes"]}
        self.instances = {i["name"]: Instance.from_json(i) for i in data["instances"]}
        self.networks = {n["name"]: Network.from_json(n) for n in data.get("networks", [])}
        self.group_networks = {k: dict(v) for k, v in data.get("group_networks", {}).items()}
        self.group_mtime = data.get("group_mtime", 0.0)
        self.group_serial = data.get("group_serial", 1)
