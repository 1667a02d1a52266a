"""A whole compute service for tests, in process and over real HTTP.

``compute_stack(testcase)`` builds, for one test: a fresh PostgreSQL
database with the node's, the identity service's and the compute
service's schemas; a ``LocalQuotaHolder`` with the cyclades resources
registered and a ``Charger``; a started ``snfd.ganeti_sim.SimulatedCluster``
registered as a backend (``sim=False`` registers instead a backend whose
RAPI port has nothing listening: every RAPI call fails); the RAPI pool on
a real ``HTTPClientPool``; an image registry stub (``StubImages``, the
real ``Image`` values); ``Servers``, ``ComputeAPI`` and ``VmapiApp`` served
on 127.0.0.1 as a node mounts them (``/compute`` behind ``TokenAuth`` with
a ``StubAuthenticator``, ``/vmapi`` open).  Everything is stopped by the
test's cleanups.

Usage::

    stack = await compute_stack(self)
    alice, token = await stack.user("alice")
    code, body, _ = await stack.call("POST", "/servers", token, {"server": {...}})
"""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer

from snfd import errors
from snfd.cyclades import store
from snfd.cyclades.compute_api import ComputeAPI, VmapiApp
from snfd.cyclades.images import Image
from snfd.cyclades.model import Flavor, GanetiBackend, Server
from snfd.cyclades.servers import ComputeSettings, Servers
from snfd.cyclades.service import COMPONENT, resources
from snfd.db.migrations import NODE_SCHEMA, Schema
from snfd.ganeti.rapi import RapiPool
from snfd.httpclient import HTTPClientPool
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.metrics import Metrics
from snfd.plugins.identity import plugin as identity_plugin
from snfd.quota.serials import Charger
from snfd.testing.identity import StubAuthenticator
from snfd.testing.node import free_port
from snfd.testing.pithos import http
from snfd.testing.postgres import fresh_database, started_pool
from snfd.testing.stubhttp import serve
from snfd.web.auth import Principal, TokenAuth
from snfd.web.site import Root

CYCLADES_SCHEMA = Schema("cyclades", "snfd.cyclades.schema")
UTC = datetime.UTC
GiB = 1 << 30
DEFAULT_LIMITS = {"cyclades.vm": 10, "cyclades.total_cpu": 32, "cyclades.cpu": 32,
                  "cyclades.total_ram": 64 * GiB, "cyclades.ram": 64 * GiB,
                  "cyclades.disk": 1024 * GiB}


class StubImages:
    """The image registry's read contract (``get``/``list``) over images
    kept in memory: a user sees their own and public images."""

    def __init__(self) -> None:
        self.images: dict[str, Image] = {}

    def add(self, owner: str, name: str = "Debian", *, public: bool = True,
            status: str = "AVAILABLE", disk_format: str = "diskdump",
            properties: dict[str, str] | None = None) -> Image:
        now = datetime.datetime.now(UTC)
        image_id = str(uuid.uuid4())
        image = Image(
            id=image_id, name=name, owner=owner,
            location=f"pithos://{owner}/images/{name}", checksum="0" * 64, size=1 << 20,
            disk_format=disk_format, container_format="bare", status=status,
            is_public=public, members=(), properties=dict(properties or {"OS": "debian"}),
            created_at=now, updated_at=now, mapfile=f"archip:{image_id}")
        self.images[image_id] = image
        return image

    async def get(self, user: str, image_id: str) -> Image:
        image = self.images.get(image_id)
        if image is None or not (image.is_public or image.owner == user):
            raise errors.NotFound(f"Image {image_id} not found.")
        return image

    async def list(self, user: str, **kwargs: Any) -> list[Image]:
        return [i for i in self.images.values() if i.is_public or i.owner == user]


@attrs.define
class ComputeStack:
    """The parts of a served compute service (see the module docstring)."""

    url: str
    dsn: str
    db: Any
    quota: LocalQuotaHolder
    charger: Charger
    rapi: RapiPool
    images: StubImages
    servers: Servers
    api: ComputeAPI
    auth: StubAuthenticator
    backend: GanetiBackend
    sim: Any
    flavors: dict[str, Flavor]
    image: Image

    @property
    def compute(self) -> str:
        """``<url>/compute/v2.0``."""
        return f"{self.url}/compute/v2.0"

    async def user(self, name: str = "alice", project: str | None = None,
                   **limits: int) -> tuple[str, str]:
        """A user with a token and cyclades quota in their base project
        (``DEFAULT_LIMITS`` overridden by ``limits``, keys with ``_`` for
        ``.``: ``vm=1``); ``(uuid, token)``."""
        uid = str(uuid.uuid4())
        token = f"token-{name}-{uid[:8]}"
        self.auth.tokens[token] = Principal(user=uid, name=name, project=project)
        await self.set_limits(uid, uid, **limits)
        return uid, token

    async def set_limits(self, user: str, project: str, **limits: int) -> None:
        """Give ``user`` holdings (and ``project`` its own) of every cyclades
        resource."""
        values = dict(DEFAULT_LIMITS)
        values.update({f"cyclades.{k}": v for k, v in limits.items()})
        for resource, limit in values.items():
            await self.quota.set_limit(f"user:{user}", f"project:{project}", resource, limit)
            await self.quota.set_limit(f"project:{project}", None, resource, 1 << 60)

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
        them) through the real update path
        (``snfd.cyclades.updates.UpdatePath``); the final job."""
        from snfd.cyclades.updates import UpdatePath
        from snfd.ganeti.jobs import attach_instance_info, job_messages

        assert job_id is not None
        rapi = self.rapi_client()
        job: dict[str, Any] = await rapi.wait_job(job_id, poll=0.02, timeout=30)
        updates = UpdatePath(self.db, self.charger, _reactor())
        for _key, message in job_messages(job, self.backend.clustername):
            if message.get("type") != "ganeti-op-status":
                continue
            await updates.op_status(await attach_instance_info(message, rapi))
        await self.charger.drain()
        return job

    async def flavor(self, cpu: int, ram: int, disk: int, template: str = "file",
                     **settings: Any) -> Flavor:
        created, _ = await self.db.run("test.flavor", store.create_flavor_txn, cpu, ram, disk,
                                       template, **settings)
        return created  # type: ignore[no-any-return]


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def compute_stack(testcase: Any, *, sim: bool = True, queue_delay: float = 0.01,
                        exec_time: float = 0.02,
                        settings: ComputeSettings | None = None) -> ComputeStack:
    """Build and serve a compute service for ``testcase`` (see the module
    docstring)."""
    from twisted.internet import reactor

    dsn = fresh_database(testcase, [NODE_SCHEMA, identity_plugin.schema, CYCLADES_SCHEMA])
    db = started_pool(testcase, dsn, max_connections=8)
    quota = LocalQuotaHolder(db)
    await quota.register_resources(COMPONENT, resources())
    charger = Charger(db, quota, COMPONENT)
    testcase.addCleanup(lambda: defer.ensureDeferred(charger.drain()))

    http_pool = HTTPClientPool(reactor, Metrics())
    testcase.addCleanup(lambda: defer.ensureDeferred(http_pool.close()))
    rapi = RapiPool(http_pool)

    cluster: Any = None
    if sim:
        from snfd.ganeti_sim import SimulatedCluster

        state = Path(testcase.mktemp())
        state.mkdir(parents=True)
        cluster = SimulatedCluster(reactor, state, "sim1.ganeti.test",
                                   queue_delay=queue_delay, exec_time=exec_time)
        await cluster.start()
        testcase.addCleanup(lambda: defer.ensureDeferred(cluster.stop()))
        backend = await db.run(
            "test.backend", store.add_backend_txn, cluster.name, cluster.url,
            username=cluster.username, password=cluster.password,
            certificate=cluster.certificate, hypervisor="fake",
            disk_templates=("diskless", "file", "plain", "drbd", "ext"))
    else:
        backend = await db.run(
            "test.backend", store.add_backend_txn, "down.ganeti.test",
            f"http://127.0.0.1:{free_port()}", username="synnefo",
            hypervisor="fake", disk_templates=("diskless", "file", "plain", "drbd", "ext"))
        backend = await db.run("test.backend_stats", store.update_backend_txn, backend.id,
                               mfree=32768, mtotal=32768, dfree=1 << 20, dtotal=1 << 20,
                               pinst_cnt=0, ctotal=16)

    root = Root()
    url = serve(testcase, root)
    auth = StubAuthenticator()
    images = StubImages()
    settings = settings or ComputeSettings(rapi_timeout=5.0)
    settings = attrs.evolve(settings, vmapi_url=f"{url}/vmapi")
    servers = Servers(db, rapi, images, charger, reactor, settings)
    api = ComputeAPI(servers, images, f"{url}/compute")
    root.mount("compute", TokenAuth(api.resource(), auth))
    root.mount("vmapi", VmapiApp(servers).resource())

    flavors = {}
    for key, shape in {"small": (1, 1024, 2, "file"), "big": (2, 2048, 2, "file"),
                       "huge": (4, 4096, 4, "file"),
                       "diskless": (1, 512, 0, "diskless")}.items():
        flavors[key], _ = await db.run("test.flavor", store.create_flavor_txn, *shape)
    image = images.add("system", "Debian Bookworm")
    return ComputeStack(url=url, dsn=dsn, db=db, quota=quota, charger=charger, rapi=rapi,
                        images=images, servers=servers, api=api, auth=auth,
                        backend=backend, sim=cluster, flavors=flavors, image=image)


__all__ = ["CYCLADES_SCHEMA", "DEFAULT_LIMITS", "ComputeStack", "StubImages",
           "compute_stack"]
