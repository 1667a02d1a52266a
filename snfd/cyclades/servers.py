"""The compute effect path: what a user's request does to servers, quota
and Ganeti (reference/synnefo-apis.md 3.1, 3.5, 3.7).

``Servers`` takes requests the API checked (``snfd.cyclades.requests``),
charges quota through the component's ``Charger`` with the commission
runner (``snfd.quota.charged``), records the change in the database and
submits the Ganeti job over RAPI.  What the job then does is applied by
the update path (``snfd.cyclades.updates``) from the job's events; the two
meet on the server row:

**Create** (``create``): the BUILD commission (offline + online + disk) is
issued first (413 as the holder says), then one transaction picks and
charges a backend (``snfd.cyclades.allocator``), inserts the server (BUILD,
task BUILD) and stores the build's secrets under a random key (password,
personality, keys, image properties: snf-image fetches them once from
``<vmapi_url>/server-params/<key>``; only ``config_url``, ``img_id`` and
``img_format`` travel in the Ganeti job) and the admin password for
``GET /servers/<id>/password``.  Then ``POST /2/instances``.  On success a
second transaction records the job id and decides the commission
accepted (BUILD quota is accepted at API time: ``server.serial`` stays
NULL).  If the cluster cannot be reached or refuses the call, the server
goes to ERROR with the reason in ``backendlogmsg``, the backend's counters
are given back, the secrets are dropped, the commission is rejected and
the caller gets 503.

**Actions** follow the protocol the update path relies on:

a) read the server, ``model.validate_action``, compute ``model.charges``
   and issue a commission when they are not empty;
b) transaction A locks the row, validates again (and checks the charges
   did not change), and sets ``task``, ``serial``, ``task_job_id = NULL``
   and ``action``;
c) the RAPI job is submitted; on failure a transaction clears the task
   (only if it is still ours), the commission is rejected and the caller
   gets 503;
d) transaction B sets ``task_job_id`` if the task is still ours and no
   job was adopted meanwhile.

The update path accepts or rejects ``serial`` when the task's job
finalizes (the runner hands the serial off); an event that arrives
before (d) adopts the job.

Deleting a server is allowed in any state (DESTROY, a forced commission);
a server whose create never reached Ganeti (ERROR without a job) is
marked deleted at once; for one whose create job is still waiting in the
queue the remove job depends on it (runs once it ended, whatever its
end), and one whose create is still being submitted answers 409.  A
delete drops the server's build parameters and
cached password at once (the update path drops the parameters when the
create job ends, too).  ``reassign`` moves the server's quota to another
project in one accepted commission (no Ganeti job).

Deliberate choices where the reference leaves room (for the requests
themselves see ``snfd.cyclades.requests``):

- NICs: ``ComputeSettings.default_nics`` NICs on the cluster's default
  link unless the request says none (real Ganeti's instance policy needs
  at least one).
- console: only ``vnc`` on an ACTIVE server; Ganeti's answer is passed on
  (host, port; no vncauthproxy yet, so the password is empty); a cluster
  whose hypervisor offers no VNC console (``kind`` ``msg``, as the fake
  hypervisor) -> 501 with Ganeti's message.
- rescue needs an image configured in ``ComputeSettings.rescue_images``
  (501 otherwise).
- Mutations of a deleted server are 404 as in the reference
  (``get_vm(non_deleted=True)``); reading it shows status DELETED.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.logger import Logger

from snfd import errors
from snfd.cyclades import allocator, model, server_groups, store
from snfd.cyclades.actions import InstanceActions
from snfd.cyclades.keypairs import Keypairs
from snfd.cyclades.model import Flavor, GanetiBackend, Migration, Server
from snfd.cyclades.networks.service import Networks
from snfd.cyclades.requests import (
    KEEP,
    MAX_TAGS,
    CreateRequest,
    Firewall,
    Migrate,
    NicRequest,
    PersonalityFile,
    Reassign,
    Rebuild,
)
from snfd.cyclades.server_groups import ServerGroups
from snfd.cyclades.volumes.model import THIN_TEMPLATES, GiB
from snfd.cyclades.volumes.service import Volumes
from snfd.ganeti.rapi import GanetiRapi, RapiError, RapiUnavailable, depends_on
from snfd.quota import serials
from snfd.quota.charged import Attempt, Settle, run_charged, settle_after_commit
from snfd.quota.serials import Charger

log = Logger(namespace="snfd.cyclades.servers")

UTC = datetime.UTC
PASSWORD_LENGTH = 12
_CREATE_PENDING = frozenset({"", "queued", "waiting", "running"})
FIREWALL_TAGS = {"ENABLED": "synnefo:network:{}:protected",
                 "DISABLED": "synnefo:network:{}:unprotected",
                 "PROTECTED": "synnefo:network:{}:limited"}
_IMAGE_READY = frozenset({"AVAILABLE", "ACTIVE"})


@attrs.frozen
class ComputeSettings:
    """What an operator sets for the compute effect path.

    ``vmapi_url``: the public base of the server-params app (``config_url``
    is ``<vmapi_url>/server-params/<key>``).  ``os``: the Ganeti OS of new
    servers.  ``hvparams``: per hypervisor name, the ``hvparams`` of creates.
    ``shutdown_timeout``: seconds Ganeti waits for a clean shutdown on stop
    and delete (None: Ganeti's default).  ``default_nics``: NICs a server
    gets without networks.  ``rescue_images``: rescue image ref -> the
    CD-ROM image path on the nodes ("default" is used when no ref is given).
    ``rapi_timeout``: seconds a RAPI call may take.
    """

    vmapi_url: str = ""
    os: str = "snf-image+default"
    hvparams: Mapping[str, Mapping[str, Any]] = attrs.Factory(dict)
    max_metadata: int = 10
    max_personality: int = 5
    max_personality_size: int = 10240
    password_ttl: int = 3600
    stats_min_age: float = 60.0
    shutdown_timeout: int | None = None
    default_nics: int = 1
    rescue_images: Mapping[str, str] = attrs.Factory(dict)
    rapi_timeout: float = 30.0


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password that passes ``check_password``."""
    alphabet = string.ascii_letters + string.digits
    # Uniform over the alphabet: bytes of the largest multiple of its size
    # below 256 (one urandom call, not one per character as secrets.choice).
    bound = 256 - 256 % len(alphabet)
    while True:
        value = "".join(alphabet[b % len(alphabet)]
                        for b in secrets.token_bytes(length * 2) if b < bound)[:length]
        if (len(value) == length and any(c.islower() for c in value)
                and any(c.isupper() for c in value) and any(c.isdigit() for c in value)):
            return value


def flavor_usable(flavor: Flavor | None, flavor_id: int, project: str) -> Flavor:
    """``flavor`` if ``project`` may create servers with it: 404 when it is
    missing or deleted, 403 when creation is off or it is private to
    other projects."""
    if flavor is None or flavor.deleted:
        raise errors.NotFound(f"Flavor {flavor_id} not found.")
    if not flavor.allow_create:
        raise errors.Forbidden(f"Flavor {flavor_id} may not be used to create servers.")
    if not flavor.public and project not in flavor.access:
        raise errors.Forbidden(f"Flavor {flavor_id} is not available to project {project}.")
    return flavor


def os_params(image: Any, config_url: str) -> dict[str, Any]:
    """The OS parameters of a create or reinstall job: where snf-image
    fetches the build's secrets, and the image."""
    return {"config_url": config_url, "img_id": getattr(image, "mapfile", ""),
            "img_format": getattr(image, "disk_format", "diskdump")}


def create_body(server: Server, backend: GanetiBackend, image: Any, config_url: str,
                settings: ComputeSettings, nics: list[dict[str, Any]] | None,
                depends: Sequence[int] = (),
                disks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``POST /2/instances`` body of ``server`` (reference 3.5); no
    secrets: those are behind ``config_url``.  ``nics``: the Ganeti NICs of
    its ports (None: ``default_nics`` on the cluster's default link);
    ``depends``: jobs (its networks') the create waits for; ``disks``: its
    volumes' Ganeti disks (thin flavors; else one of the flavor's disk)."""
    flavor = server.flavor
    template = flavor.disk_template
    if disks is not None:
        template = "ext" if template.startswith("ext_") else template
    elif template.startswith("ext_"):
        disks = [{"size": flavor.disk * 1024, "provider": template[len("ext_"):]}]
        template = "ext"
    elif template != "diskless":
        disks = [{"size": flavor.disk * 1024}]
    else:
        disks = []
    if nics is None:
        nics = [{} for _ in range(settings.default_nics)]
    body = {
        "mode": "create",
        "name": server.instance_name,
        "disk_template": template,
        "disks": disks,
        "nics": nics,
        "beparams": {"vcpus": flavor.cpu, "memory": flavor.ram, "auto_balance": True},
        "os_type": settings.os,
        "osparams": os_params(image, config_url),
        "hvparams": dict(settings.hvparams.get(backend.hypervisor, {})),
        "ip_check": False,
        "name_check": False,
        "wait_for_sync": False,
    }
    if depends:
        body["depends"] = [[job, ["success"]] for job in depends]
    return body


def build_params(image: Any, password: str, personality: Sequence[PersonalityFile],
                 keys: list[str], user_data: str | None, hostname: str = "") -> dict[str, Any]:
    """What snf-image fetches once from ``config_url`` (``hostname``: the
    server's name as a host name, ``host_name``)."""
    params: dict[str, Any] = {
        "img_id": getattr(image, "mapfile", ""),
        "img_hostname": hostname,
        "img_passwd": password,
        "img_format": getattr(image, "disk_format", "diskdump"),
        "img_personality": json.dumps([f.as_json() for f in personality]),
        "img_properties": json.dumps(dict(getattr(image, "properties", {}) or {})),
    }
    if keys:
        params["auth_keys"] = "\n".join(keys)
    if user_data is not None:
        params["cloud_userdata"] = user_data
    return params


_HOST_LABEL = re.compile(r"[^a-z0-9-]+")


def host_name(name: str) -> str:
    """A server's name as a host name (one DNS label: lowercase letters,
    digits and hyphens, at most 63); empty when nothing is left."""
    return _HOST_LABEL.sub("-", name.lower()).strip("-")[:63].strip("-")


def _create_pending(server: Server) -> bool:
    """A create job submitted (or being submitted) that has not finished:
    the instance may not exist yet (Ganeti adds it at the end of the job),
    so a remove must wait for the job (Ganeti's instance lock would make it
    wait too; the simulator has no such lock)."""
    if server.operstate != "BUILD":
        return False
    if server.backendjobid is None:
        return True
    return (server.backendopcode in ("", "OP_INSTANCE_CREATE")
            and server.backendjobstatus in _CREATE_PENDING)


def _image_info(image: Any) -> dict[str, Any]:
    """What a server keeps of the image it was built from."""
    return {"id": image.id, "name": getattr(image, "name", ""),
            "owner": getattr(image, "owner", ""),
            "checksum": getattr(image, "checksum", ""),
            "size": getattr(image, "size", 0),
            "disk_format": getattr(image, "disk_format", ""),
            "is_snapshot": bool(getattr(image, "is_snapshot", False))}


# -- transactions ----------------------------------------------------------

def _insert_txn(txn: Any, user: str, project: str, req: CreateRequest, flavor: Flavor,
                image: Any, key: str, params: dict[str, Any], progress_key: str,
                password: str, expires: datetime.datetime, networks: Networks | None,
                planned: Sequence[tuple[Any, NicRequest]] | None,
                ) -> tuple[Server, GanetiBackend, str, list[int]] | None:
    """Insert the server on the backend the allocator picks; with it the
    policy of the server group it joins ("" none) and the members of that
    group on that backend; None when no backend can take it."""
    policy, peers = "", []
    group: tuple[str, set[int]] | None = None
    if req.server_group is not None:
        joined, members = server_groups.join_txn(txn, req.server_group)
        policy = joined.policy
        group = (policy, {b for b in members.values() if b is not None})
    backend = allocator.choose_backend_txn(txn, flavor, project, req.hosts, group)
    if backend is None:
        return None
    if req.server_group is not None:
        peers = [sid for sid, b in members.items() if b == backend.id]
    # A server booted from a volume shows no image (Nova's ""), whatever
    # the volume was made from; ``image`` keeps what was deployed.
    server = store.insert_server_txn(
        txn, user, project, req.name, flavor.id, image.id if req.image_id else "",
        backend_id=backend.id,
        operstate="BUILD", task="BUILD", action="BUILD", metadata=req.metadata,
        tags=req.tags, key_names=req.key_names, shared_to_project=req.shared_to_project,
        image=_image_info(image), access_ipv4=req.access_ipv4, access_ipv6=req.access_ipv6,
        server_group=req.server_group, description=req.description)
    store.put_params_txn(txn, key, server.id, params)
    store.put_progress_key_txn(txn, progress_key, server.id)
    store.put_password_txn(txn, server.id, password, expires)
    if networks is not None and planned is not None:
        ports = networks.server_ports_txn(txn, server, planned, req.security_groups)
        server = attrs.evolve(server, ports=tuple(ports))
    return server, backend, policy, peers


def check_image_needs(image: Any, flavor: Flavor, from_volume: bool = False) -> None:
    """400 when ``flavor`` has less memory than the image's ``min_ram``
    (MiB) or, unless the server boots from an existing volume, a smaller
    disk than its ``min_disk`` (GiB), as Nova refuses."""
    min_ram, min_disk = int(getattr(image, "min_ram", 0) or 0), \
        int(getattr(image, "min_disk", 0) or 0)
    if flavor.ram < min_ram:
        raise errors.BadRequest(f"Flavor's memory is too small for requested image: it has"
                                f" {flavor.ram} MiB, the image needs {min_ram}.")
    if not from_volume and flavor.disk < min_disk:
        raise errors.BadRequest(f"Flavor's disk is too small for requested image: it has"
                                f" {flavor.disk} GiB, the image needs {min_disk}.")


#: The most reports one build's OS definition may make (progress steps and
#: diagnostics); more are 404, so a runaway script cannot fill the table.
MAX_IMAGE_REPORTS = 200


def _rebuild_params_txn(txn: Any, server_id: int, key: str, params: dict[str, Any],
                        progress_key: str, password: str,
                        expires: datetime.datetime) -> None:
    """A rebuild's build parameters replace any left of an earlier build."""
    store.drop_params_txn(txn, server_id)
    store.put_params_txn(txn, key, server_id, params)
    store.put_progress_key_txn(txn, progress_key, server_id)
    store.put_password_txn(txn, server_id, password, expires)


def _created_txn(txn: Any, component: str, server_id: int, job_id: int,
                 serial: int | None, action: tuple[str, datetime.datetime] | None
                 ) -> Server | None:
    """Ganeti took the create job: its id on the server, the commission
    decided (accepted), and with ``action`` (request id, time) the
    request's ``create`` instance action."""
    server = store.server_row_txn(txn, server_id, for_update=True)
    if serial is not None:
        serials.decide_txn(txn, component, serial, True)
    if server is None:
        return None
    if action is not None:
        store.add_action_txn(txn, server_id, action[0], "create", server.userid,
                             server.project, action[1], job_id)
    fields: dict[str, Any] = {}
    if server.task == "BUILD" and server.task_job_id is None:
        fields["task_job_id"] = job_id
    if server.backendjobid is None:
        fields.update(backendjobid=job_id, backendopcode="OP_INSTANCE_CREATE",
                      backendjobstatus="queued")
    if fields:
        store.set_server_txn(txn, server_id, **fields)
    return store.server_txn(txn, server_id)


def _create_failed_txn(txn: Any, component: str, server_id: int, key: str,
                       serial: int | None, reason: str) -> list[str]:
    """The create was not submitted; the volumes to delete after the commit."""
    server = store.server_txn(txn, server_id, for_update=True)
    if serial is not None:
        serials.decide_txn(txn, component, serial, False)
    store.take_params_txn(txn, key)
    if server is None:
        return []
    # The instance never reached Ganeti: its ports (and addresses) go now,
    # its new boot volume too, and the volumes it was to take are free.
    Networks.sync_ports_txn(txn, server, None, removed=True)
    doomed = Volumes.sync_disks_txn(txn, server, None, failed_create=True)
    if server.backend_id is not None:
        allocator.release_backend_txn(txn, server.backend_id, server.flavor)
    fields: dict[str, Any] = {"operstate": "ERROR", "backendlogmsg": reason}
    if server.task == "BUILD":
        fields.update(task="", task_job_id=None, serial=None)
    store.update_server_txn(txn, server_id, **fields)
    return doomed


def _begin_task_txn(txn: Any, component: str, server_id: int, user: str, task: str,
                    validate_as: str, expected: dict[str, int], serial: int | None,
                    new_flavor: Flavor | None, action: str) -> tuple[Server, int | None]:
    server = store.server_txn(txn, server_id, for_update=True)
    if server is None or server.userid != user or server.deleted:
        raise errors.NotFound(f"Server {server_id} not found.")
    model.validate_action(server, validate_as)
    if model.charges(server, task, new_flavor) != expected:
        raise errors.Conflict(f"Server {server_id} changed meanwhile; try again.")
    previous = server.serial if server.serial is not None and server.serial != serial else None
    if previous is not None:
        serials.decide_txn(txn, component, previous, False)
    updated = store.update_server_txn(txn, server_id, task=task, serial=serial,
                                      task_job_id=None, action=action)
    assert updated is not None
    if task == "DESTROY":
        # Whatever the remove job does, the server's secrets go now.
        store.drop_params_txn(txn, server_id)
        store.drop_password_txn(txn, server_id)
    return updated, previous


def _task_job_txn(txn: Any, server_id: int, task: str, job_id: int) -> Server | None:
    server = store.server_txn(txn, server_id, for_update=True)
    if server is None:
        return None
    if server.task == task and server.task_job_id is None:
        return store.update_server_txn(txn, server_id, task_job_id=job_id)
    return server


def _task_failed_txn(txn: Any, component: str, server_id: int, task: str,
                     serial: int | None, reason: str) -> None:
    server = store.server_txn(txn, server_id, for_update=True)
    if serial is not None:
        serials.decide_txn(txn, component, serial, False)
    if server is None or server.task != task or server.task_job_id is not None:
        return
    if server.serial != serial:
        return
    store.update_server_txn(txn, server_id, task="", serial=None, backendlogmsg=reason)


def _mark_deleted_txn(txn: Any, server_id: int, user: str) -> Server:
    server = store.server_txn(txn, server_id, for_update=True)
    if server is None or server.userid != user or server.deleted:
        raise errors.NotFound(f"Server {server_id} not found.")
    if server.backendjobid is not None or server.operstate != "ERROR" or server.task:
        raise errors.Conflict(f"Server {server_id} changed meanwhile; try again.")
    updated = store.update_server_txn(txn, server_id, deleted=True, operstate="DESTROYED",
                                      action="DESTROY")
    assert updated is not None
    Networks.sync_ports_txn(txn, updated, None, removed=True)
    store.drop_params_txn(txn, server_id)
    store.drop_password_txn(txn, server_id)
    return updated


def _reassign_txn(txn: Any, component: str, server_id: int, user: str, old_project: str,
                  project: str, shared: bool, serial: int | None,
                  expected: dict[str, int]) -> None:
    server = store.server_txn(txn, server_id, for_update=True)
    if server is None or server.userid != user or server.deleted:
        raise errors.NotFound(f"Server {server_id} not found.")
    model.validate_action(server, "REASSIGN")
    if server.project != old_project or model.charges(server, "DESTROY") != expected:
        raise errors.Conflict(f"Server {server_id} changed meanwhile; try again.")
    store.update_server_txn(txn, server_id, project=project, shared_to_project=shared)
    if serial is not None:
        serials.decide_txn(txn, component, serial, True)


def _edit_txn(txn: Any, server_id: int, user: str, what: str,
              change: Callable[[Server], dict[str, Any]]) -> Server:
    server = store.server_txn(txn, server_id, for_update=True)
    if server is None or server.userid != user or server.deleted:
        raise errors.NotFound(f"Server {server_id} not found.")
    model.validate_action(server, what)
    fields = change(server)
    if not fields:
        return server
    updated = store.update_server_txn(txn, server_id, **fields)
    assert updated is not None
    return updated


Submit = Callable[[GanetiRapi, Server], Awaitable[int]]


class Servers:
    """The compute effect path (see the module docstring).

    @param db: the node's ``IDatabase``.
    @param rapi_pool: a ``snfd.ganeti.rapi.RapiPool``.
    @param images: the image registry (``get(user, id)``, ``list(user)``).
    @param charger: the compute component's ``Charger``.
    @param clock: an ``IReactorTime`` (password expiry).
    @param settings: ``ComputeSettings``.
    """

    def __init__(self, db: Any, rapi_pool: Any, images: Any, charger: Charger, clock: Any,
                 settings: ComputeSettings | None = None, networks: Networks | None = None,
                 volumes: Volumes | None = None):
        self._db = db
        self.volumes = volumes
        self._rapi_pool = rapi_pool
        self.images = images
        self._charger = charger
        self._clock = clock
        self.settings = settings or ComputeSettings()
        self.keypairs = Keypairs(db, clock)
        self.networks = networks
        self.groups = ServerGroups(db)
        self.actions = InstanceActions(db, clock)

    # -- helpers -------------------------------------------------------------

    def now(self) -> datetime.datetime:
        """The clock's time (UTC)."""
        return datetime.datetime.fromtimestamp(self._clock.seconds(), UTC)

    def _progress_url(self, params: dict[str, Any]) -> str:
        """Give a build's parameters the URL its OS definition reports
        progress and diagnostics to (``img_progress_url``); its key."""
        key = secrets.token_urlsafe(32)
        params["img_progress_url"] = (f"{self.settings.vmapi_url.rstrip('/')}"
                                      f"/server-progress/{key}")
        return key

    async def progress_server(self, key: str) -> int:
        """The server whose build reports with ``key`` (``img_progress_url``),
        counting the report: 404 for an unknown key or one that made
        ``MAX_IMAGE_REPORTS`` reports already."""
        server_id: int | None = await self._db.run(
            "cyclades.progress_key", store.use_progress_key_txn, key, MAX_IMAGE_REPORTS)
        if server_id is None:
            raise errors.NotFound("No such build (or it reported too much already).")
        return server_id

    def _config_url(self, key: str) -> str:
        """Where snf-image fetches the build parameters stored under ``key``."""
        return f"{self.settings.vmapi_url.rstrip('/')}/server-params/{key}"

    def _rapi(self, backend: GanetiBackend) -> GanetiRapi:
        client: GanetiRapi = self._rapi_pool.client(
            allocator.rapi_target(backend, self.settings.rapi_timeout))
        return client

    async def _backend(self, server: Server) -> GanetiBackend:
        backend: GanetiBackend | None = None
        if server.backend_id is not None:
            backend = await self._db.run("cyclades.backend", store.backend_txn,
                                         server.backend_id)
        if backend is None:
            raise errors.ServiceUnavailable(
                f"Server {server.id} has no Ganeti backend; ask an administrator.")
        return backend

    async def get(self, user: str, server_id: int) -> Server:
        """The user's server (deleted ones too); 404 for anyone else's."""
        server: Server | None = await self._db.run("cyclades.server", store.server_txn,
                                                   server_id)
        if server is None or server.userid != user:
            raise errors.NotFound(f"Server {server_id} not found.")
        return server

    async def backends(self) -> list[GanetiBackend]:
        """Every registered Ganeti cluster (for administrators' views)."""
        found: list[GanetiBackend] = await self._db.run("cyclades.backends",
                                                        store.backends_txn)
        return found

    async def owner_of(self, server_id: int) -> tuple[str | None, str | None]:
        """The owner and the project of a server (for requests acting on
        others' servers), or ``(None, None)`` when there is no such server."""
        server: Server | None = await self._db.run("cyclades.server", store.server_txn,
                                                   server_id)
        return (None, None) if server is None else (server.userid, server.project)

    async def _live(self, user: str, server_id: int) -> Server:
        server = await self.get(user, server_id)
        if server.deleted:
            raise errors.NotFound(f"Server {server_id} not found.")
        return server

    async def of_user(self, user: str, since: datetime.datetime | None = None,
                      before: datetime.datetime | None = None) -> list[Server]:
        """The user's live servers, or with ``since`` those changed after it
        and with ``before`` those changed at or before it (deleted ones
        included with either)."""
        found: list[Server] = await self._db.run("cyclades.servers", store.servers_txn,
                                                 userid=user, since=since, before=before)
        return found

    async def during(self, start: datetime.datetime, end: datetime.datetime,
                     project: str | None = None) -> list[Server]:
        """The servers (of ``project``; ``None``: all) that existed at some
        time in ``[start, end]``, deleted ones included (usage)."""
        found: list[Server] = await self._db.run("cyclades.servers_during",
                                                 store.servers_during_txn, start, end, project)
        return found

    async def everyone(self, since: datetime.datetime | None = None,
                       before: datetime.datetime | None = None) -> list[Server]:
        """Every live server (administrators' ``all_tenants``), or those
        changed in ``(since, before]`` as ``of_user``."""
        found: list[Server] = await self._db.run("cyclades.servers", store.servers_txn,
                                                 since=since, before=before)
        return found

    async def of_project(self, project: str, since: datetime.datetime | None = None,
                         before: datetime.datetime | None = None) -> list[Server]:
        """The live servers of ``project`` (any member's), or those changed
        in ``(since, before]`` as ``of_user``."""
        found: list[Server] = await self._db.run("cyclades.servers", store.servers_txn,
                                                 project=project, since=since, before=before)
        return found

    async def create(self, user: str, req: CreateRequest, scope: str | None = None,
                     request_id: str | None = None) -> tuple[Server, str]:
        """Create the server ``req`` describes; the new server (BUILD) and
        its admin password (see the module docstring).  It is charged to
        the project ``req`` names, else to ``scope`` (the project the
        caller's token is scoped to), else to the user's base project.
        With ``request_id`` the server's instance actions note that
        request's ``create``, with its job.

        The commission is decided (accepted) in the transaction that
        records the job, and resolved at the holder after the answer
        (``Settle.LATER``): the holder counts a pending import as usage,
        so limits and a next create see it at once."""
        project = req.project or scope or user
        flavor = flavor_usable(
            await self._db.read("cyclades.flavor", store.flavor_txn, req.flavor_id),
            req.flavor_id, project)
        thin = flavor.disk_template in THIN_TEMPLATES
        boot_device = next((d for d in req.block_devices if d.boot), None)
        if req.block_devices and not thin:
            raise errors.BadRequest(f"Flavor {req.flavor_id} has {flavor.disk_template}"
                                    " disks: volumes need a flavor of a thin volume type"
                                    f" ({', '.join(THIN_TEMPLATES)}).")
        if thin and (self.volumes is None or self.volumes.thin is None):
            raise errors.BadRequest(f"Flavor {req.flavor_id} makes thin volumes, and the"
                                    " volume service does not run here.")
        boot: tuple[Any, ...] | None = None
        extras: list[tuple[Any, bool]] = []
        if boot_device is not None:
            assert self.volumes is not None
            image, boot = await self.volumes.boot_source(user, boot_device, project)
        else:
            image = await self.images.get(user, req.image_id, project)
        if thin:
            boot_size = boot[1].size * GiB if boot and boot[0] == "volume" else image.size
            if boot_size > flavor.disk * GiB:
                raise errors.BadRequest(f"The boot disk's source ({boot_size} bytes) is larger"
                                        f" than flavor {req.flavor_id}'s disk"
                                        f" ({flavor.disk} GiB).")
        for device in req.block_devices:
            if not device.boot:
                assert self.volumes is not None
                extras.append((await self.volumes.extra_volume(user, device),
                               device.delete_on_termination))
        status = str(getattr(image, "status", "AVAILABLE")).upper()
        if status not in _IMAGE_READY:
            raise errors.BadRequest(f"Image {req.image_id} is not available ({status}).")
        check_image_needs(image, flavor, from_volume=boot is not None and boot[0] == "volume")
        keys = await self.keypairs.public_keys(user, list(req.key_names))
        password = req.admin_pass or generate_password()
        planned = None
        if req.security_groups is not None and self.networks is not None:
            await self.networks.security.resolve(project, req.security_groups)
        if req.networks != ():
            if self.networks is not None:
                planned = await self.networks.plan(user, req.networks)
            elif req.networks is not None:
                raise errors.BadRequest("This cloud serves no network API: leave networks"
                                        " out, or give \"auto\" or \"none\".")

        async def build(attempt: Attempt) -> Server:
            await allocator.refresh_stale(self._db, self._rapi_pool,
                                          self.settings.stats_min_age)
            key = secrets.token_urlsafe(32)
            params = build_params(image, password, req.personality, keys, req.user_data,
                                  host_name(req.name))
            if self.volumes is not None:
                params.update(self.volumes.deploy_params(deployed=thin))
            progress_key = self._progress_url(params)
            expires = self.now() + datetime.timedelta(seconds=self.settings.password_ttl)
            inserted = await self._db.run("cyclades.create_server", _insert_txn, user,
                                          project, req, flavor, image, key, params,
                                          progress_key, password, expires, self.networks,
                                          planned)
            if inserted is None:
                raise errors.ServiceUnavailable(
                    "No Ganeti backend can host this server right now; try again later"
                    " or ask an administrator.")
            server, backend, policy, peers = inserted
            config_url = self._config_url(key)
            nics: list[dict[str, Any]] | None = None
            if req.networks == ():
                nics = []
            elif planned is not None and self.networks is not None:
                nics = [self.networks.ganeti.nic_params(p) for p in server.ports]
            try:
                disks = None
                if not thin and self.volumes is not None:
                    await self.volumes.export_image(server, image)
                if thin:
                    assert self.volumes is not None
                    disks = await self.volumes.server_disks(
                        server, image, boot,
                        boot_device.delete_on_termination if boot_device is not None
                        and boot_device.source == "volume" else True, extras)
                depends: list[int] = []
                if self.networks is not None and server.ports:
                    depends = await self.networks.ganeti.ensure_on_backend(
                        backend, self.networks.ganeti.ganeti_networks(server.ports))
                placed = await self._group_placement(backend, server, policy, peers)
                depends = [*depends, *placed.pop("depends", [])]
                body = create_body(server, backend, image, config_url, self.settings, nics,
                                   depends, disks)
                body.update(placed)
                if self.networks is not None and server.ports:
                    # The NICs come up filtered by their security groups.
                    guarded = await self.networks.security.server_tags(server.id)
                    body["tags"] = [*body.get("tags", []), *guarded]
                job_id = await self._rapi(backend).create_instance(body)
            except (RapiUnavailable, RapiError, errors.ServiceUnavailable,
                    errors.BadRequest) as e:
                # (BadRequest: a volume taken meanwhile.)
                reason = e.message if isinstance(e, errors.Fault) else str(e)
                log.warn("server {id}: create not submitted to {cluster}: {reason}",
                         id=server.id, cluster=backend.clustername, reason=reason)
                doomed = await self._db.run("cyclades.create_failed", _create_failed_txn,
                                            attempt.component, server.id, key,
                                            attempt.serial, reason)
                if doomed and self.volumes is not None:
                    await self.volumes.finish_removed(doomed)
                raise errors.ServiceUnavailable(
                    f"The Ganeti backend {backend.clustername} could not take the server:"
                    f" {reason}. Server {server.id} is in ERROR; delete it and try again."
                ) from None
            attempt.mark_committed()
            action = (request_id, self.now()) if request_id is not None else None
            created = await self._db.run("cyclades.server_created", _created_txn,
                                         attempt.component, server.id, job_id, attempt.serial,
                                         action)
            if self.networks is not None and server.ports:
                # Its addresses join its groups: their members' rules change.
                await self.networks.deliver_around(*server.ports, skip=server.id)
            return created or server

        draft = Server(id=0, userid=user, project=project, name=req.name, flavor=flavor,
                       image_id=image.id)
        server = await run_charged(
            self._charger, build, model.provisions(draft, model.charges(draft, "BUILD")),
            name=f"cyclades: create server {req.name!r} for {user}", settle=Settle.LATER)
        return server, password

    async def _group_placement(self, backend: GanetiBackend, server: Server, policy: str,
                               peers: Sequence[int]) -> dict[str, Any]:
        """What a create body adds for a server group's policy inside the
        backend (``snfd.cyclades.server_groups``): a member's nodes for
        affinity; for anti-affinity the exclusion tag, and the job that
        makes it one (the create ``depends`` on it) when the cluster lacks
        that tag."""
        rapi = self._rapi(backend)
        if policy == "anti-affinity" and server.server_group is not None:
            placed: dict[str, Any] = {"tags": [server_groups.exclusion_tag(server.server_group)]}
            if server_groups.EXCLUSION_CLUSTER_TAG not in await rapi.cluster_tags():
                job = await rapi.add_cluster_tags([server_groups.EXCLUSION_CLUSTER_TAG])
                placed["depends"] = [job]
            return placed
        if policy == "affinity":
            for peer in peers:
                found = await rapi.instance(model.instance_name(peer))
                if found and found.get("pnode"):
                    nodes = {"pnode": found["pnode"]}
                    snodes = found.get("snodes") or []
                    if server.flavor.disk_template == "drbd" and snodes:
                        nodes["snode"] = snodes[0]
                    return nodes
        return {}

    async def server_params(self, key: str) -> dict[str, Any]:
        """The build parameters under ``key``, once; 404 afterwards."""
        params: dict[str, Any] | None = await self._db.run(
            "cyclades.take_params", store.take_params_txn, key)
        if params is None:
            raise errors.NotFound("No such server parameters (they are handed out once).")
        return params

    # -- the task protocol ------------------------------------------------------

    async def _run_task(self, user: str, server_id: int, task: str, submit: Submit, *,
                        validate_as: str | None = None, new_flavor: Flavor | None = None,
                        force: bool = False, action: str | None = None) -> Server:
        server = await self._live(user, server_id)
        validate_as = validate_as or task
        model.validate_action(server, validate_as)
        amounts = model.charges(server, task, new_flavor)

        async def begin(attempt: Attempt) -> Server:
            started, previous = await self._db.run(
                "cyclades.begin_task", _begin_task_txn, attempt.component, server_id, user,
                task, validate_as, amounts, attempt.serial, new_flavor, action or task)
            if previous is not None:
                await settle_after_commit(self._charger, previous, False)
            try:
                backend = await self._backend(started)
                job_id = await submit(self._rapi(backend), started)
            except (RapiUnavailable, RapiError, errors.ServiceUnavailable) as e:
                reason = e.message if isinstance(e, errors.Fault) else str(e)
                await self._db.run("cyclades.task_failed", _task_failed_txn,
                                   attempt.component, server_id, task, attempt.serial, reason)
                raise errors.ServiceUnavailable(
                    f"Could not {task.lower()} server {server_id}: {reason}") from None
            attempt.mark_committed()
            updated = await self._db.run("cyclades.task_job", _task_job_txn, server_id, task,
                                         job_id)
            return updated or started

        # The task's job decides the commission: the update path settles it.
        return await run_charged(
            self._charger, begin, model.provisions(server, amounts), force=force,
            name=f"cyclades: {task} server {server_id}", resource_key=f"server:{server_id}",
            settle=Settle.HANDED_OFF)

    # -- actions -----------------------------------------------------------------

    async def start(self, user: str, server_id: int) -> Server:
        """Start a STOPPED server (+online quota)."""
        return await self._run_task(user, server_id, "START",
                                    lambda rapi, s: rapi.startup(s.instance_name))

    async def stop(self, user: str, server_id: int) -> Server:
        """Shut an ACTIVE server down (-online quota)."""
        timeout = self.settings.shutdown_timeout
        return await self._run_task(user, server_id, "STOP",
                                    lambda rapi, s: rapi.shutdown(s.instance_name, timeout))

    async def reboot(self, user: str, server_id: int, hard: bool = False) -> Server:
        """Reboot (Ganeti's hard reboot; ``hard`` skips the clean shutdown)."""
        timeout = 0 if hard else self.settings.shutdown_timeout
        return await self._run_task(
            user, server_id, "REBOOT",
            lambda rapi, s: rapi.reboot(s.instance_name, "hard", shutdown_timeout=timeout))

    async def resize(self, user: str, server_id: int, flavor_id: int) -> Server:
        """Move a STOPPED server to another flavor with the same disk and
        template (Ganeti modify of vcpus/minmem/maxmem)."""
        server = await self._live(user, server_id)
        model.validate_action(server, "RESIZE")
        new = flavor_usable(
            await self._db.run("cyclades.flavor", store.flavor_txn, flavor_id),
            flavor_id, server.project)
        old = server.flavor
        if new.id == old.id:
            raise errors.BadRequest(f"Server {server_id} already has flavor {flavor_id}.")
        if new.disk != old.disk or new.disk_template != old.disk_template:
            raise errors.BadRequest(
                "Resizing can change only CPUs and RAM: the new flavor must have the same"
                " disk size and disk template.")
        beparams = {"vcpus": new.cpu, "minmem": new.ram, "maxmem": new.ram}
        return await self._run_task(
            user, server_id, "RESIZE",
            lambda rapi, s: rapi.modify(s.instance_name, beparams=beparams), new_flavor=new)

    async def rebuild(self, user: str, server_id: int, req: Rebuild) -> tuple[Server, str]:
        """Reinstall a server's disk from another (or the same) image with
        Ganeti's reinstall job (shutdown, reinstall and, unless it was
        stopped, startup); the server as it is now and its new admin
        password.  Its image, name, metadata and access addresses change
        at once (as Nova's); the OS definition fetches the new build
        parameters from a new ``config_url``."""
        server = await self._live(user, server_id)
        model.validate_action(server, "REBUILD")
        try:
            image = await self.images.get(user, req.image_id, server.project)
        except errors.NotFound as e:
            # Nova: an image that cannot be used is a bad request.
            raise errors.BadRequest(e.message) from None
        status = str(getattr(image, "status", "AVAILABLE")).upper()
        if status not in _IMAGE_READY:
            raise errors.BadRequest(f"Image {req.image_id} is not available ({status}).")
        check_image_needs(image, server.flavor)
        key_names = server.key_names
        if req.key_name is not KEEP:
            key_names = () if req.key_name is None else (str(req.key_name),)
        try:
            keys = await self.keypairs.public_keys(user, list(key_names))
        except errors.NotFound as e:
            raise errors.BadRequest(e.message) from None
        password = req.admin_pass or generate_password()
        key = secrets.token_urlsafe(32)
        user_data = None if req.user_data is KEEP else req.user_data
        params = build_params(image, password, req.personality, keys,
                              user_data if isinstance(user_data, str) else None,
                              host_name(req.name or server.name))
        if self.volumes is not None:
            # A rebuild writes the image over the disk, thin or not.
            params.update(self.volumes.deploy_params(deployed=False))
            await self.volumes.export_image(server, image)
        expires = self.now() + datetime.timedelta(seconds=self.settings.password_ttl)
        start = server.operstate != "STOPPED"
        osparams = os_params(image, self._config_url(key))
        progress_key = self._progress_url(params)
        await self._db.run("cyclades.rebuild_params", _rebuild_params_txn, server_id, key,
                           params, progress_key, password, expires)
        await self._run_task(
            user, server_id, "REBUILD",
            lambda rapi, s: rapi.reinstall(s.instance_name, self.settings.os, osparams,
                                           start=start),
            action="REBUILD_START" if start else "REBUILD")
        changes: dict[str, Any] = {"image_id": image.id, "image": _image_info(image),
                                   "key_names": key_names}
        for name, value in (("name", req.name), ("metadata", req.metadata),
                            ("access_ipv4", req.access_ipv4),
                            ("access_ipv6", req.access_ipv6)):
            if value is not None:
                changes[name] = value
        if req.description is not KEEP:
            changes["description"] = req.description
        rebuilt: Server = await self._db.run("cyclades.rebuilt", _edit_txn, server_id, user,
                                             "METADATA", lambda _: changes)
        return rebuilt, password

    async def migrate(self, user: str, server_id: int, req: Migrate) -> Server:
        """Move a server to another Ganeti node of its cluster (for
        administrators): live migration of a running server (Ganeti's
        migrate), cold migration (failover: a running server stops and
        starts again on the other node) or evacuation (failover ignoring
        the disks' consistency, for a node that is down).  Ganeti chooses
        the node (DRBD: the secondary; shared storage: its iallocator)
        and refuses templates that cannot move (plain, file, diskless):
        the job fails and the server stays where it was.  ``req.host``,
        when given, must be the server's own backend: servers do not move
        between clusters.  The move is recorded (``migrations``)."""
        server = await self._live(user, server_id)
        model.validate_action(server, "MIGRATE" if req.kind == "live-migration" else "FAILOVER")
        backend = await self._backend(server)
        if req.host is not None and req.host != backend.clustername:
            raise errors.BadRequest(
                f"Server {server_id} can move only inside its Ganeti cluster"
                f" {backend.clustername}, not to host {req.host[:80]}.")
        found = None
        with contextlib.suppress(RapiUnavailable, RapiError):
            found = await self._rapi(backend).instance(server.instance_name)
        source = found.get("pnode") if isinstance(found, dict) else None

        def submit(rapi: GanetiRapi, s: Server) -> Awaitable[int]:
            if req.kind == "live-migration":
                return rapi.migrate(s.instance_name, mode="live")
            return rapi.failover(s.instance_name,
                                 ignore_consistency=req.kind == "evacuation")

        moved = await self._run_task(user, server_id, "MIGRATE", submit)
        job_id = moved.task_job_id if moved.task_job_id is not None else moved.backendjobid
        await self._db.run("cyclades.add_migration", store.add_migration_txn, server_id,
                           job_id, req.kind, backend.clustername, source, None,
                           server.flavor.id)
        return moved

    async def migrations(self, server_id: int | None = None) -> list[Migration]:
        """Recorded migrations (of one server), newest first."""
        found: list[Migration] = await self._db.run("cyclades.migrations",
                                                    store.migrations_txn, server_id)
        return found

    async def destroy(self, user: str, server_id: int) -> Server:
        """Delete a server (see the module docstring).  A server already
        being deleted is left to that removal (no second job or release)."""
        server = await self._live(user, server_id)
        if server.task == "DESTROY":
            return server
        if server.backendjobid is None and server.operstate == "ERROR" and not server.task:
            deleted: Server = await self._db.run("cyclades.mark_deleted", _mark_deleted_txn,
                                                 server_id, user)
            return deleted
        depends = None
        if _create_pending(server):
            if server.backendjobid is None:
                raise errors.Conflict(
                    f"Server {server_id} is still being submitted to Ganeti; delete it"
                    " once its build is queued.")
            # The remove waits for the create job, whatever its end: it
            # then removes the instance made, or finds none (unknown_entity,
            # which the update path counts as removed).
            depends = depends_on(server.backendjobid, statuses=())
        timeout = self.settings.shutdown_timeout
        return await self._run_task(
            user, server_id, "DESTROY",
            lambda rapi, s: rapi.delete_instance(s.instance_name, timeout, depends=depends),
            force=True)

    async def console(self, user: str, server_id: int) -> dict[str, Any]:
        """VNC console access of an ACTIVE server: ``{type, host, port,
        password}``."""
        server = await self._live(user, server_id)
        model.validate_action(server, "CONSOLE")
        if server.operstate != "STARTED":
            raise errors.Conflict(f"Server {server_id} must be ACTIVE for a console.")
        backend = await self._backend(server)
        try:
            info = await self._rapi(backend).console(server.instance_name)
        except (RapiUnavailable, RapiError) as e:
            raise errors.ServiceUnavailable(f"No console for server {server_id}: {e}") from None
        if info.get("kind") != "vnc" or not info.get("host") or not info.get("port"):
            message = info.get("message") or f"the hypervisor offers a {info.get('kind')!r}"
            raise errors.NotImplementedFault(
                f"No VNC console for server {server_id}: {message}.")
        return {"type": "vnc", "host": info["host"], "port": info["port"], "password": ""}

    async def firewall(self, user: str, server_id: int, req: Firewall) -> Server:
        """Set a NIC's firewall profile through instance tags
        (``synnefo:network:<NIC name or uuid>:<profile>``, which the
        node-side NIC scripts apply).  ``req.nic`` names a port of the
        server, or a NIC Ganeti has without a port by its id."""
        server = await self._live(user, server_id)
        nic = req.nic
        port = next((p for p in server.ports if nic is not None and str(p.id) == str(nic)),
                    None)
        match = [n for n in server.nics if nic is not None and str(n.get("id")) == str(nic)]
        if port is not None:
            nic_key = port.nic_name
        elif match:
            nic_key = str(match[0].get("uuid") or match[0].get("name") or match[0].get("id"))
        else:
            raise errors.BadRequest(f"Server {server_id} has no NIC {nic!r}.")
        wanted = FIREWALL_TAGS[req.profile].format(nic_key)
        every = {t.format(nic_key) for t in FIREWALL_TAGS.values()}
        os_name = self.settings.os

        async def submit(rapi: GanetiRapi, s: Server) -> int:
            current = await rapi.instance(s.instance_name)
            old = [t for t in (current or {}).get("tags", []) if t in every and t != wanted]
            if old:
                await rapi.delete_tags(s.instance_name, old)
            await rapi.add_tags(s.instance_name, [wanted])
            return await rapi.modify(s.instance_name, os_name=os_name)

        changed = await self._run_task(user, server_id, "FIREWALL", submit)
        if port is not None and self.networks is not None:
            await self.networks.update_port(user, port.id, True,
                                            firewall_profile=req.profile)
        return changed

    async def rescue(self, user: str, server_id: int, image_ref: str = "default") -> Server:
        """Boot a STOPPED server from a rescue image on its next start."""
        ref = image_ref
        path = self.settings.rescue_images.get(ref)
        if not path:
            raise errors.NotImplementedFault(
                f"No rescue image {ref!r} is configured on this cloud.")
        hvparams = {"boot_order": "cdrom", "cdrom_image_path": path}
        return await self._run_task(
            user, server_id, "RESCUE",
            lambda rapi, s: rapi.modify(s.instance_name, hvparams=hvparams))

    async def unrescue(self, user: str, server_id: int) -> Server:
        """Boot a rescued (STOPPED) server from its disk again."""
        hvparams = {"boot_order": "disk", "cdrom_image_path": ""}
        return await self._run_task(
            user, server_id, "UNRESCUE",
            lambda rapi, s: rapi.modify(s.instance_name, hvparams=hvparams))

    async def reassign(self, user: str, server_id: int, req: Reassign) -> Server:
        """Move a server (and its quota) to another project and/or change
        its sharing; one commission, accepted with the change."""
        server = await self._live(user, server_id)
        model.validate_action(server, "REASSIGN")
        target = server.project if req.project is None else req.project
        shared = (server.shared_to_project if req.shared_to_project is None
                  else req.shared_to_project)
        released = model.charges(server, "DESTROY")
        moved = []
        if target != server.project and released:
            moved = model.provisions(server, released) + model.provisions(
                attrs.evolve(server, project=target), {k: -v for k, v in released.items()})

        async def move(attempt: Attempt) -> None:
            await self._db.run("cyclades.reassign", _reassign_txn, attempt.component,
                               server_id, user, server.project, target, shared,
                               attempt.serial, released)

        await run_charged(self._charger, move, moved,
                          name=f"cyclades: reassign server {server_id}",
                          resource_key=f"server:{server_id}")
        return await self.get(user, server_id)

    # -- plain edits --------------------------------------------------------------

    async def rename(self, user: str, server_id: int, name: str | None = None,
                     access_ipv4: str | None = None, access_ipv6: str | None = None,
                     description: Any = KEEP) -> Server:
        """Change the name, the access addresses (those not None) and the
        description (unless ``KEEP``; None clears it)."""
        fields: dict[str, Any] = {
            k: v for k, v in (("name", name), ("access_ipv4", access_ipv4),
                              ("access_ipv6", access_ipv6)) if v is not None}
        if description is not KEEP:
            fields["description"] = description
        server: Server = await self._db.run("cyclades.rename", _edit_txn, server_id, user,
                                            "RENAME", lambda s: fields)
        return server

    async def set_lock(self, user: str, server_id: int, locked: bool, admin: bool) -> Server:
        """Lock (as its owner or an administrator) or unlock a server; an
        administrator's lock is undone only by an administrator (403)."""
        def change(server: Server) -> dict[str, Any]:
            if not locked and server.locked_by == "admin" and not admin:
                raise errors.Forbidden(f"Server {server_id} was locked by an administrator.")
            return {"locked_by": ("admin" if admin else "owner") if locked else ""}

        server: Server = await self._db.run("cyclades.lock", _edit_txn, server_id, user,
                                            "LOCK", change)
        return server

    async def reset_state(self, user: str, server_id: int, state: str) -> Server:
        """Record a server as ``error`` (ERROR) or ``active`` (STARTED)
        without Ganeti, as an administrator corrects a stuck server; its
        task is dropped.  Only between states charged alike (ERROR, BUILD
        and STARTED all hold the running CPU and memory): 409 else."""
        def change(server: Server) -> dict[str, Any]:
            if server.operstate not in ("ERROR", "BUILD", "STARTED"):
                raise errors.Conflict(
                    f"Server {server_id} is {model.api_status(server)}: only a running,"
                    " building or failed server's state can be reset.")
            return {"operstate": "ERROR" if state == "error" else "STARTED", "task": "",
                    "task_job_id": None}

        server: Server = await self._db.run("cyclades.reset_state", _edit_txn, server_id,
                                            user, "LOCK", change)
        return server

    async def set_metadata(self, user: str, server_id: int, items: Mapping[str, str],
                           replace: bool = False) -> dict[str, str]:
        """Merge (or with ``replace`` set) metadata; the result.  400 past
        the limit."""
        given = dict(items)
        limit = self.settings.max_metadata

        def change(s: Server) -> dict[str, Any]:
            merged = given if replace else {**s.metadata, **given}
            if len(merged) > limit:
                raise errors.BadRequest(f"A server may have at most {limit} metadata items.")
            return {"metadata": merged}

        server: Server = await self._db.run("cyclades.metadata", _edit_txn, server_id, user,
                                            "METADATA", change)
        return dict(server.metadata)

    async def delete_metadata(self, user: str, server_id: int, key: str) -> None:
        def change(s: Server) -> dict[str, Any]:
            if key not in s.metadata:
                raise errors.NotFound(f"Metadata key {key!r} not found.")
            return {"metadata": {k: v for k, v in s.metadata.items() if k != key}}

        await self._db.run("cyclades.metadata", _edit_txn, server_id, user, "METADATA",
                           change)

    async def set_tags(self, user: str, server_id: int, tags: Sequence[str],
                       add: bool = False) -> tuple[str, ...]:
        """Replace the tags (or with ``add`` add them); the result."""
        given = tuple(tags)

        def change(s: Server) -> dict[str, Any]:
            result = tuple(dict.fromkeys((*s.tags, *given))) if add else given
            if len(result) > MAX_TAGS:
                raise errors.BadRequest(f"A server may have at most {MAX_TAGS} tags.")
            return {"tags": result} if result != s.tags else {}

        server: Server = await self._db.run("cyclades.tags", _edit_txn, server_id, user,
                                            "TAGS", change)
        return server.tags

    async def delete_tag(self, user: str, server_id: int, tag: str | None) -> None:
        """Remove one tag (404 if absent), or all with ``tag`` None."""
        def change(s: Server) -> dict[str, Any]:
            if tag is None:
                return {"tags": ()} if s.tags else {}
            if tag not in s.tags:
                raise errors.NotFound(f"Tag {tag!r} not found.")
            return {"tags": tuple(t for t in s.tags if t != tag)}

        await self._db.run("cyclades.tags", _edit_txn, server_id, user, "TAGS", change)

    # -- reads ----------------------------------------------------------------------

    async def diagnostics(self, user: str, server_id: int) -> list[dict[str, Any]]:
        await self.get(user, server_id)
        found: list[dict[str, Any]] = await self._db.run(
            "cyclades.diagnostics", store.diagnostics_txn, server_id)
        return found

    async def password(self, user: str, server_id: int) -> str:
        """The admin password while it is cached; 404 afterwards."""
        await self.get(user, server_id)
        password: str | None = await self._db.run("cyclades.password", store.password_txn,
                                                  server_id)
        if password is None:
            raise errors.NotFound(f"The password of server {server_id} is not available.")
        return password

    async def quota_defaults(self, base: bool) -> dict[str, int]:
        """Each cyclades resource's default limit, as it stands: of a base
        project (``base``), else of a new project's members."""
        found = await self._charger.holder.component_resources(self._charger.component)
        return {r.name: r.base_default if base else r.project_default for r in found}

    async def limits(self, user: str, project: str | None = None) -> dict[str, Any]:
        """Nova-style absolute limits from the user's cyclades quota in
        ``project`` (default: their base project)."""
        project = project or user
        holdings = await self._charger.holder.quotas(
            holders=[f"user:{user}"], sources=[f"project:{project}"],
            resources=["cyclades.vm", "cyclades.cpu", "cyclades.ram", "cyclades.floating_ip"])
        by = {h.resource: h for h in holdings}
        out: dict[str, Any] = {}
        for resource, limit_name, used_name, scale in (
                ("cyclades.vm", "maxTotalInstances", "totalInstancesUsed", 1),
                ("cyclades.cpu", "maxTotalCores", "totalCoresUsed", 1),
                ("cyclades.ram", "maxTotalRAMSize", "totalRAMUsed", model.MiB),
                ("cyclades.floating_ip", "maxTotalFloatingIps", "totalFloatingIpsUsed", 1)):
            holding = by.get(resource)
            if holding is not None:
                out[limit_name] = holding.limit // scale
                out[used_name] = holding.usage // scale
        return out
