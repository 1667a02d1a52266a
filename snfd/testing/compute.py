"""A whole compute service for tests, in process and over real HTTP.

``compute_stack(testcase)`` builds, for one test, a node with the
identity, storage and compute services through the daemon's own
factories (``snfd.testing.nodecase.build_node``): a fresh PostgreSQL
database with their schemas, the services started (the cyclades
resources registered with the identity service's quota holder), and an
HTTP server on 127.0.0.1 serving the node's root as a node would
(``/compute`` and ``/image`` behind ``TokenAuth`` with the identity
service's tokens, ``/vmapi`` open, ``/object-store``, ``/identity``).
On it: a started ``snfd.ganeti_sim.SimulatedCluster`` registered as a
backend through the compute service's ``IComputeBackends``
(``sim=False`` registers instead a backend whose RAPI port has nothing
listening: every RAPI call fails), a few flavors and a public system
image registered from a file through the image registry on the object
store.  ``[cyclades] rapi_timeout`` is 5 seconds; ``overrides`` change
any config key.  Everything is stopped by the test's cleanups.

Usage::

    stack = await compute_stack(self)
    alice, token = await stack.user("alice")
    code, body, _ = await stack.call("POST", "/servers", token, {"server": {...}})
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer, threads

from snfd.cyclades import store
from snfd.cyclades.images import Image, ImageRegistry
from snfd.cyclades.model import Flavor, GanetiBackend, Server
from snfd.cyclades.servers import Servers
from snfd.cyclades.service import COMPONENT, CycladesService
from snfd.ganeti.rapi import RapiPool
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.identity.service import IdentityService
from snfd.interfaces import IComputeBackends
from snfd.node import Node
from snfd.quota.serials import Charger
from snfd.testing.node import free_port
from snfd.testing.pithos import http
from snfd.testing.stubhttp import serve

GiB = 1 << 30
DEFAULT_LIMITS = {"cyclades.vm": 10, "cyclades.total_cpu": 32, "cyclades.cpu": 32,
                  "cyclades.total_ram": 64 * GiB, "cyclades.ram": 64 * GiB,
                  "cyclades.disk": 1024 * GiB, "cyclades.network.private": 5,
                  "cyclades.floating_ip": 5}
DISK_TEMPLATES = ("diskless", "file", "plain", "drbd", "ext")
# The container test images are stored in.
IMAGES_CONTAINER = "images"


@attrs.define
class ComputeStack:
    """The parts of a served compute service (see the module docstring)."""

    url: str
    node: Node
    identity: IdentityService
    service: CycladesService
    backend: GanetiBackend
    sim: Any
    flavors: dict[str, Flavor]
    image: Image
    files: Path

    @property
    def compute(self) -> str:
        """``<url>/compute/v2.0``."""
        return f"{self.url}/compute/v2.0"

    @property
    def dsn(self) -> str:
        return self.node.dsn

    @property
    def db(self) -> Any:
        return self.node.db

    @property
    def quota(self) -> LocalQuotaHolder:
        """The identity service's quota holder."""
        return self.identity.quota

    @property
    def charger(self) -> Charger:
        return self.service.charger

    @property
    def rapi(self) -> RapiPool:
        return self.service.rapi

    @property
    def images(self) -> ImageRegistry:
        """The compute service's image registry (on the object store)."""
        return self.service.images

    @property
    def network(self) -> str:
        """The network API's versioned base URL."""
        return f"{self.url}/network/v2.0"

    @property
    def servers(self) -> Servers:
        return self.service.servers

    async def admin(self, name: str = "root") -> tuple[str, str]:
        """An administrator (an Astakos admin, with the cyclades quota of
        ``user``): ``(uuid, token)``."""
        uuid, _ = await self.user(name)
        accounts = self.identity.accounts
        await accounts.modify_user(uuid, is_admin=True)
        token, _ = await accounts.issue_token(await accounts.get_user(uuid))
        return uuid, token

    async def user(self, name: str = "alice", **limits: int) -> tuple[str, str]:
        """An active user of the identity service (``<name>@example.org``)
        with cyclades quota in their base project (``DEFAULT_LIMITS``
        overridden by ``limits``, keys with ``_`` for ``.``: ``vm=1``);
        ``(uuid, token)``."""
        user, token = await self.identity.accounts.create_user(
            f"{name}@example.org", name.capitalize(), "Test", activate=True)
        assert token is not None
        await self.set_limits(user.uuid, user.uuid, **limits)
        return user.uuid, token

    async def set_limits(self, user: str, project: str, **limits: int) -> None:
        """Give ``user`` holdings (and ``project`` its own) of every cyclades
        resource."""
        values = dict(DEFAULT_LIMITS)
        values.update({f"cyclades.{k}": v for k, v in limits.items()})
        for resource, limit in values.items():
            await self.quota.set_limit(f"user:{user}", f"project:{project}", resource, limit)
            await self.quota.set_limit(f"project:{project}", None, resource, 1 << 60)

    async def add_image(self, owner: str, name: str = "Debian", *, public: bool = True,
                        disk_format: str = "diskdump",
                        properties: dict[str, str] | None = None) -> Image:
        """Register an image of ``owner`` (an account: a user's uuid, or
        ``self.images.system_owner`` for a system image) from a small new
        file in its ``images`` container; the registered ``Image``.
        ``properties`` default to ``{"OS": "debian"}``."""
        return await register_image(self.images, self.files, owner, name, public=public,
                                    disk_format=disk_format, properties=properties)

    async def usage(self, user: str, project: str | None = None) -> dict[str, int]:
        """The user's cyclades usage (``usage_max``) in ``project`` (default:
        the base project), after background settlements."""
        await self.charger.drain()
        holdings = await self.quota.quotas(holders=[f"user:{user}"],
                                           sources=[f"project:{project or user}"])
        return {h.resource: h.usage for h in holdings if h.resource.startswith("cyclades.")}

    async def pending(self) -> list[int]:
        """Commissions of the compute component still pending at the holder."""
        serials: list[int] = await self.quota.pending(COMPONENT)
        return serials

    async def call(self, method: str, path: str, token: str | None = None,
                   body: Any = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        """One request to ``<compute>/<path>`` (or to ``path`` itself when it
        is a URL): ``(status, decoded JSON or None, headers)``."""
        url = path if path.startswith("http") else f"{self.compute}{path}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        hdrs = dict(headers or {})
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        reply = await http(method, url, token, hdrs, data)
        decoded = json.loads(reply.body) if reply.body.strip() else None
        return reply.code, decoded, reply.headers

    async def server(self, server_id: int) -> Server:
        """The server row as stored."""
        found: Server | None = await self.db.run("test.server", store.server_txn, server_id)
        assert found is not None
        return found

    async def set_server(self, server_id: int, **fields: Any) -> Server:
        """Change a server row directly, as the update path would."""
        changed: Server | None = await self.db.run("test.set_server", store.update_server_txn,
                                                   server_id, **fields)
        assert changed is not None
        return changed

    def rapi_client(self) -> Any:
        """The RAPI client of the stack's backend."""
        from snfd.cyclades.allocator import rapi_for

        return rapi_for(self.rapi, self.backend)

    async def follow(self, job_id: int | None) -> dict[str, Any]:
        """Wait for Ganeti job ``job_id`` to finish and apply its final
        event (with the instance's details, as the events plugin attaches
        them) through the compute service's update path
        (``snfd.cyclades.updates.UpdatePath``); the final job."""
        from snfd.ganeti.jobs import attach_instance_info, job_messages

        assert job_id is not None
        rapi = self.rapi_client()
        job: dict[str, Any] = await rapi.wait_job(job_id, poll=0.02, timeout=30)
        for _key, message in job_messages(job, self.backend.clustername):
            if message.get("type") == "ganeti-network-status":
                await self.service.updates.network_status(message)
            if message.get("type") != "ganeti-op-status":
                continue
            await self.service.updates.op_status(await attach_instance_info(message, rapi))
        await self.charger.drain()
        return job

    async def follow_all(self, after: int = 0) -> int:
        """``follow`` every job with an id above ``after``, in order; the
        highest job id."""
        ids = sorted(int(j["id"]) for j in await self.rapi_client().jobs())
        for job_id in ids:
            if job_id > after:
                await self.follow(job_id)
        return max(ids, default=after)

    async def flavor(self, cpu: int, ram: int, disk: int, template: str = "file",
                     **settings: Any) -> Flavor:
        created, _ = await self.db.run("test.flavor", store.create_flavor_txn, cpu, ram, disk,
                                       template, **settings)
        return created  # type: ignore[no-any-return]


async def register_image(images: ImageRegistry, files: Path, owner: str, name: str, *,
                         public: bool = True, disk_format: str = "diskdump",
                         properties: dict[str, str] | None = None) -> Image:
    """Write a small file under ``files`` and register it through ``images``
    as ``owner``'s image ``name`` (``properties`` default to
    ``{"OS": "debian"}``), as an operator's ``snf-manage image-register``
    does."""
    path = files / f"{uuid.uuid4().hex}.{disk_format}"
    await threads.deferToThread(path.write_bytes, f"{name} ({disk_format})\n".encode() * 64)
    return await images.register_file(owner, path, IMAGES_CONTAINER, {
        "name": name, "disk_format": disk_format, "is_public": public,
        "properties": dict(properties if properties is not None else {"OS": "debian"})})


async def compute_stack(testcase: Any, *, sim: bool = True, queue_delay: float = 0.01,
                        exec_time: float = 0.02, nodes: int = 1,
                        overrides: dict[tuple[str, str], str] | None = None,
                        volumes: bool = False, hypervisor: str = "fake") -> ComputeStack:
    """Build and serve a compute service for ``testcase`` (see the module
    docstring).  ``overrides``: config keys (``("cyclades", "os")``) over
    the stack's own; ``nodes``: the simulated cluster's node count;
    ``volumes``: the volume service (``archip``) runs too; ``hypervisor``:
    the simulated cluster's (``kvm`` hot-plugs disks of running servers)."""
    from twisted.internet import reactor

    from snfd.testing.nodecase import build_node

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    plugins = ("identity", "pithos", "cyclades") + (("archip",) if volumes else ())
    built = await build_node(testcase, plugins, {
        ("cyclades", "public_url"): url,
        ("cyclades", "rapi_timeout"): "5.0",
        **(overrides or {}),
    }, address=url)
    serve(testcase, built.node.root, port)
    node = built.node
    identity: IdentityService = built.services["identity"]
    compute: CycladesService = built.services["cyclades"]
    backends = built.providers.get(IComputeBackends)
    assert backends is not None

    cluster: Any = None
    if sim:
        from snfd.ganeti_sim import SimulatedCluster

        state = Path(testcase.mktemp())
        state.mkdir(parents=True)
        cluster = SimulatedCluster(reactor, state, "sim1.ganeti.test", nodes=nodes,
                                   queue_delay=queue_delay, exec_time=exec_time,
                                   hypervisor=hypervisor)
        await cluster.start()
        testcase.addCleanup(lambda: defer.ensureDeferred(cluster.stop()))
        await backends.register_backend(
            cluster.name, cluster.url, cluster.username, cluster.password,
            cluster.certificate, hypervisor, DISK_TEMPLATES, "watch")
        backend = await node.db.run("test.backend", store.backend_txn,
                                    clustername=cluster.name)
    else:
        await backends.register_backend(
            "down.ganeti.test", f"http://127.0.0.1:{free_port()}", "synnefo", "", "",
            "fake", DISK_TEMPLATES, "watch")
        found = await node.db.run("test.backend", store.backend_txn,
                                  clustername="down.ganeti.test")
        assert found is not None
        backend = await node.db.run("test.backend_stats", store.update_backend_txn, found.id,
                                    mfree=32768, mtotal=32768, dfree=1 << 20, dtotal=1 << 20,
                                    pinst_cnt=0, ctotal=16)
    assert backend is not None
    # Close the pooled RAPI connections before the cluster stops.
    testcase.addCleanup(lambda: defer.ensureDeferred(node.http.close()))

    flavors = {}
    for key, shape in {"small": (1, 1024, 2, "file"), "big": (2, 2048, 2, "file"),
                       "huge": (4, 4096, 4, "file"),
                       "diskless": (1, 512, 0, "diskless")}.items():
        flavors[key], _ = await node.db.run("test.flavor", store.create_flavor_txn, *shape)
    files = Path(testcase.mktemp())
    files.mkdir(parents=True)
    image = await register_image(compute.images, files, compute.images.system_owner,
                                 "Debian Bookworm")
    return ComputeStack(url=url, node=node, identity=identity, service=compute,
                        backend=backend, sim=cluster, flavors=flavors, image=image,
                        files=files)


__all__ = ["DEFAULT_LIMITS", "ComputeStack", "compute_stack", "register_image"]
