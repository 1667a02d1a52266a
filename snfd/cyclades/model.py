"""The compute domain's rules, as pure values and functions: server states
and how the API shows them, which action is allowed when, flavor names, and
what each change costs in quota (reference/synnefo-apis.md 3.1, 3.5-3.7).

Nothing here does I/O; the effect path (``servers``), the update path
(``updates``) and the reconciler all decide with these.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import attrs

from snfd import errors
from snfd.quota import Provision, user_and_project

# -- states ---------------------------------------------------------------

OPERSTATES = frozenset({"BUILD", "ERROR", "STOPPED", "STARTED", "DESTROYED", "RESIZE"})

# The internal state after a successful opcode; others leave it unchanged.
OPER_STATE_FROM_OPCODE = {
    "OP_INSTANCE_CREATE": "STARTED",
    "OP_INSTANCE_STARTUP": "STARTED",
    "OP_INSTANCE_REBOOT": "STARTED",
    "OP_INSTANCE_SHUTDOWN": "STOPPED",
    "OP_INSTANCE_REMOVE": "DESTROYED",
}

JOB_STATUSES = frozenset({"queued", "waiting", "canceling", "running",
                          "success", "error", "canceled"})
FINAL_JOB_STATUSES = frozenset({"success", "error", "canceled"})
PENDING_JOB_STATUSES = frozenset({"queued", "waiting", "running"})

_API_STATUS = {"BUILD": "BUILD", "ERROR": "ERROR", "STOPPED": "STOPPED",
               "STARTED": "ACTIVE", "DESTROYED": "DELETED", "RESIZE": "RESIZE",
               "REBUILD": "REBUILD", "MIGRATING": "MIGRATING"}

# Tasks a user request starts, and how SNF:task_state names them.
TASK_STATE = {"BUILD": "BUILDING", "START": "STARTING", "STOP": "STOPPING",
              "REBOOT": "REBOOTING", "RESIZE": "RESIZING", "DESTROY": "DESTROYING",
              "RESCUE": "RESCUING", "UNRESCUE": "UNRESCUING", "REBUILD": "REBUILDING",
              "MIGRATE": "MIGRATING",
              "FIREWALL": "SETTING_FIREWALL", "REASSIGN": ""}


@attrs.frozen
class Flavor:
    """A flavor: Synnefo's (unnamed, unique by shape, known by ``id``) or
    one an administrator made through Nova's API (``label``, ``nova_id``
    of its choosing, swap, ephemeral disk, extra specs; see cyclades
    migration 0004).  ``allow_create`` false is Nova's "disabled"."""

    id: int
    cpu: int
    ram: int            # MiB
    disk: int           # GiB
    disk_template: str
    allow_create: bool = True
    public: bool = True
    access: tuple[str, ...] = ()
    deleted: bool = False
    label: str | None = None        # the given name; None: Synnefo's
    nova_id: str | None = None      # Nova's id (``flavorid``); None: the serial id
    swap: int = 0                   # MiB
    ephemeral: int = 0              # GiB
    rxtx_factor: float = 1.0
    description: str | None = None
    extra_specs: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        """The given name, else Synnefo's (``flavor_name``)."""
        if self.label is not None:
            return self.label
        return flavor_name(self.cpu, self.ram, self.disk, self.disk_template)

    @property
    def flavorid(self) -> str:
        """The id Nova's dialect shows and takes."""
        return self.nova_id if self.nova_id is not None else str(self.id)


@attrs.frozen
class GanetiBackend:
    """A registered Ganeti cluster (a row of ``cyclades_backends``)."""

    id: int
    clustername: str
    rapi_url: str
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    certificate: str = attrs.field(default="", repr=False)
    offline: bool = False
    drained: bool = False
    public: bool = True
    projects: tuple[str, ...] = ()
    disk_templates: tuple[str, ...] = ()
    hypervisor: str = "kvm"
    events: str = "watch"
    mfree: int = 0
    mtotal: int = 0
    dfree: int = 0
    dtotal: int = 0
    pinst_cnt: int = 0
    ctotal: int = 0
    stats_updated: datetime.datetime | None = None
    created: datetime.datetime | None = None


@attrs.frozen
class Aggregate:
    """A host aggregate: a named group of backends (by cluster name),
    perhaps an availability zone, and metadata (cyclades migration 0005)."""

    id: int
    name: str
    availability_zone: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    hosts: tuple[str, ...] = ()
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None
    #: made with it, never changed (Nova shows it from 2.41)
    uuid: str = ""


@attrs.frozen
class Server:
    """A row of ``cyclades_servers`` with its flavor."""

    id: int
    userid: str
    project: str
    name: str
    flavor: Flavor
    image_id: str
    backend_id: int | None = None
    operstate: str = "BUILD"
    deleted: bool = False
    suspended: bool = False
    rescue: bool = False
    shared_to_project: bool = False
    action: str = ""
    task: str = ""
    task_job_id: int | None = None
    serial: int | None = None
    backendjobid: int | None = None
    backendopcode: str = ""
    backendjobstatus: str = ""
    backendlogmsg: str = ""
    backendtime: datetime.datetime | None = None
    buildpercentage: int = 0
    image: dict[str, Any] = attrs.Factory(dict)
    metadata: dict[str, str] = attrs.Factory(dict)
    tags: tuple[str, ...] = ()
    key_names: tuple[str, ...] = ()
    nics: tuple[dict[str, Any], ...] = ()
    disks: tuple[dict[str, Any], ...] = ()
    #: its ports (``snfd.cyclades.networks.model.Port``), filled by the store
    ports: tuple[Any, ...] = ()
    #: its volumes (the volume service's ``Volume`` values) while attached
    volumes: tuple[Any, ...] = ()
    #: who locked it (Nova's lock): "", "owner" or "admin"
    locked_by: str = ""
    #: the access addresses the user set (Nova's accessIPv4/v6; "" unset)
    access_ipv4: str = ""
    access_ipv6: str = ""
    #: the id of its server group (Nova's), None: in none
    server_group: str | None = None
    #: the user's description of it (Nova's, from 2.19); None: none given
    description: str | None = None
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None

    @property
    def instance_name(self) -> str:
        return instance_name(self.id)


#: Server group policies: the two of Nova's microversion 2.1 and the soft
#: variants of 2.15 (preferences, never a refusal).
GROUP_POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")


@attrs.frozen
class ServerGroup:
    """A row of ``cyclades_server_groups`` with its live members' ids."""

    id: str
    userid: str
    project: str
    name: str
    policy: str
    members: tuple[int, ...] = ()
    created: datetime.datetime | None = None
    #: the policy's rules (Nova 2.64): ``max_server_per_host`` of an
    #: anti-affinity group, else none
    rules: Mapping[str, int] = attrs.field(factory=dict)


@attrs.frozen
class JobEvent:
    """One opcode of a server's Ganeti job as the update path saw it;
    ``result`` "Success" or "Error" once it ended (None before)."""

    job_id: int
    opcode: str
    start_time: datetime.datetime
    finish_time: datetime.datetime | None = None
    result: str | None = None


@attrs.frozen
class InstanceAction:
    """What one request did to a server (Nova's instance action): its
    ``action`` name (``create``, ``reboot``...), who asked, when, the
    Ganeti job it submitted (None: none) and that job's events."""

    server_id: int
    request_id: str
    action: str
    userid: str
    project: str
    start_time: datetime.datetime
    job_id: int | None = None
    events: tuple[JobEvent, ...] = ()
    #: the compute host (backend) its events ran on, None: none known
    host: str | None = None

    @property
    def failed(self) -> bool:
        return any(e.result == "Error" for e in self.events)

    @property
    def updated(self) -> datetime.datetime:
        """When it last changed: its start, or its latest event's start or
        end (Nova's ``updated_at``)."""
        times = [self.start_time]
        for e in self.events:
            times += [e.start_time] + ([e.finish_time] if e.finish_time is not None else [])
        return max(times)


@attrs.frozen
class Migration:
    """A move of a server inside its backend an administrator asked for
    (Nova's migration): ``kind`` live-migration, migration (Ganeti's
    failover) or evacuation (failover ignoring the disks' consistency);
    its ``status`` from its job's events: queued, running, completed or
    error (or cancelled: aborted while its job was queued); ``finished``
    when the job ended, ``updated`` its latest event (None: none yet);
    ``uuid`` made with it."""

    id: int
    server_id: int
    job_id: int | None
    kind: str
    source_compute: str
    source_node: str | None
    dest_node: str | None
    flavor_id: int
    created: datetime.datetime
    status: str = "queued"
    finished: datetime.datetime | None = None
    updated: datetime.datetime | None = None
    uuid: str = ""


INSTANCE_PREFIX = "snf-"


def instance_name(server_id: int) -> str:
    """The Ganeti instance name of a server (``snf-<id>``)."""
    return f"{INSTANCE_PREFIX}{server_id}"


def server_id_of(instance: str) -> int | None:
    """The server id in a Ganeti instance name, or None if it is not ours."""
    if not isinstance(instance, str) or not instance.startswith(INSTANCE_PREFIX):
        return None
    rest = instance[len(INSTANCE_PREFIX):]
    if not rest.isdigit() or len(rest) > 18:
        return None
    return int(rest)


def flavor_name(cpu: int, ram: int, disk: int, disk_template: str) -> str:
    """Synnefo's flavor name: ``C<cpu>R<ram MiB>D<disk GiB><template>``."""
    return f"C{cpu}R{ram}D{disk}{disk_template}"


def api_status(server: Server) -> str:
    """The status the API shows (``get_rsapi_state``): transient REBOOT and
    RESIZE while such a job is pending, DELETED once deleted."""
    if server.deleted:
        return "DELETED"
    state = _API_STATUS.get(server.operstate, "UNKNOWN")
    pending = server.backendjobstatus in PENDING_JOB_STATUSES
    if state == "ACTIVE" and pending and server.backendopcode == "OP_INSTANCE_REBOOT":
        return "REBOOT"
    if state == "STOPPED" and server.task == "RESIZE":
        return "RESIZE"
    if server.task == "REBUILD":
        return "REBUILD"
    if server.task == "MIGRATE":
        return "MIGRATING"
    return state


def task_state(server: Server) -> str:
    """``SNF:task_state``: the pending task's -ING name, or ''."""
    return TASK_STATE.get(server.task, "") if server.task else ""


# -- actions ----------------------------------------------------------------

def check_unlocked(server: Server, admin: bool) -> None:
    """A locked server changes only by an administrator's request: 409
    for anyone else."""
    if server.locked_by and not admin:
        raise errors.Conflict(f"Server {server.id} is locked.")


def validate_action(server: Server, action: str, hotplug: bool = False) -> None:
    """Raise the reference's fault when ``action`` may not run now.

    ``action`` is one of START, STOP, REBOOT, RESIZE, RESCUE, UNRESCUE,
    REBUILD, MIGRATE (live), FAILOVER, DESTROY, FIREWALL, CONSOLE, REASSIGN,
    CONNECT, DISCONNECT, ATTACH, DETACH
    and the metadata/tag operations (always allowed).
    """
    if server.deleted:
        raise errors.BadRequest(f"Server {server.id} has been deleted.")
    if action in ("DESTROY", "TAGS", "METADATA", "RENAME", "LOCK"):
        return
    if server.task:
        if server.task == "BUILD":
            raise errors.BuildInProgress(f"Server {server.id} is being built.")
        raise errors.BadRequest(
            f"Cannot perform '{action}' on server {server.id}: a"
            f" '{server.task}' action is in progress.")
    if action == "REBUILD":
        # Nova rebuilds active, stopped and failed servers, not rescued ones.
        if server.operstate not in ("STARTED", "STOPPED", "ERROR") or server.rescue:
            raise errors.Conflict(f"Cannot perform 'REBUILD' on server {server.id} while"
                                  f" it is {'in rescue' if server.rescue else api_status(server)}.")
        return
    if server.operstate == "ERROR":
        raise errors.BadRequest(f"Cannot perform '{action}' on server {server.id}:"
                                " it is in the ERROR state.")
    if server.operstate == "BUILD" and action != "CONSOLE":
        raise errors.BuildInProgress(f"Server {server.id} is being built.")
    needs = {"START": "STOPPED", "STOP": "STARTED", "RESIZE": "STOPPED",
             "RESCUE": "STOPPED", "UNRESCUE": "STOPPED", "MIGRATE": "STARTED"}
    if not hotplug:
        needs.update(CONNECT="STOPPED", DISCONNECT="STOPPED",
                     ATTACH="STOPPED", DETACH="STOPPED")
    wanted = needs.get(action)
    if wanted is not None and server.operstate != wanted:
        shown = _API_STATUS.get(wanted, wanted)
        raise errors.Conflict(
            f"Cannot perform '{action}' on server {server.id}: it must be {shown},"
            f" not {api_status(server)}.")
    if action == "UNRESCUE" and not server.rescue:
        raise errors.BadRequest(f"Server {server.id} is not in rescue mode.")
    if action == "RESCUE" and server.rescue:
        raise errors.BadRequest(f"Server {server.id} is already in rescue mode.")


# -- quota ------------------------------------------------------------------

MiB = 1 << 20
GiB = 1 << 30

OFFLINE = ("cyclades.vm", "cyclades.total_cpu", "cyclades.total_ram")
ONLINE = ("cyclades.cpu", "cyclades.ram")


def _amounts(flavor: Flavor) -> dict[str, int]:
    return {"cyclades.vm": 1, "cyclades.total_cpu": flavor.cpu,
            "cyclades.total_ram": flavor.ram * MiB, "cyclades.cpu": flavor.cpu,
            "cyclades.ram": flavor.ram * MiB, "cyclades.disk": flavor.disk * GiB}


def charges(server: Server, action: str, new_flavor: Flavor | None = None,
            running: bool | None = None) -> dict[str, int]:
    """What ``action`` moves, resource -> signed quantity (zeros omitted).

    BUILD: offline + online + disk.  START (or REBOOT from STOPPED):
    +online.  STOP: -online.  DESTROY: -(offline + disk + online if it is
    running).  RESIZE: the cpu/ram differences (online too if running).
    ``running`` overrides the guess from ``server.operstate``.
    """
    flavor = server.flavor
    have = _amounts(flavor)
    if running is None:
        running = server.operstate in ("STARTED", "BUILD", "ERROR")
    out: dict[str, int] = {}
    if action == "BUILD":
        out = dict(have)
    elif action in ("START", "REBOOT"):
        if server.operstate == "STOPPED":
            out = {k: have[k] for k in ONLINE}
    elif action == "STOP":
        if server.operstate in ("STARTED", "BUILD", "ERROR"):
            out = {k: -have[k] for k in ONLINE}
    elif action == "DESTROY":
        keys = OFFLINE + ("cyclades.disk",) + (ONLINE if running else ())
        out = {k: -have[k] for k in keys}
    elif action == "RESIZE":
        assert new_flavor is not None
        new = _amounts(new_flavor)
        keys = ("cyclades.total_cpu", "cyclades.total_ram") + (ONLINE if running else ())
        out = {k: new[k] - have[k] for k in keys}
    return {k: v for k, v in out.items() if v}


def provisions(server: Server, amounts: dict[str, int]) -> list[Provision]:
    """The user/project provision pairs for ``amounts``."""
    out: list[Provision] = []
    for resource, quantity in sorted(amounts.items()):
        out += user_and_project(server.userid, server.project, resource, quantity)
    return out
