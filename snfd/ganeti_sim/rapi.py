"""The simulated cluster's Remote API (RAPI v2) over twisted.web.

Answers like Ganeti 3.0's ``ganeti-rapi`` with ``--require-authentication``
(reference/ganeti.md Part B sections 5 and 8, checked against a real
cluster):

* HTTP basic auth on every path, ``/version`` included: 401 with
  ``WWW-Authenticate: Basic realm="Ganeti Remote API"`` otherwise;
* errors are ``{"code", "message", "explain"}`` with the message
  HTML-escaped and ``explain`` the standard description of the status;
* a request body must be ``application/json`` (415 otherwise) and parse
  (400 ``Unable to parse JSON data``); bad parameters are 400 with
  Ganeti's "Invalid body parameters: ..." text;
* every write answers 200 and a bare integer job id, once the job file is
  on disk; semantic errors only show in the job;
* ``GET /2/jobs/<id>`` of an unknown job is 200 with every field null;
* ``/2/networks`` (list, bulk, create), ``/2/networks/<n>`` (get, delete),
  ``.../connect`` and ``.../disconnect`` submit OP_NETWORK_* jobs (see
  ``snfd.ganeti_sim.networks``); ``/2/groups[/<g>]`` show the one group;
  a body that names a parameter the path fixes (``network_name``) is a 400
  "Can't overwrite static parameters", as in Ganeti;
* ``POST /2/instances/<n>/reinstall`` builds its ops itself, as Ganeti's
  handler does: one job of OP_INSTANCE_SHUTDOWN, OP_INSTANCE_REINSTALL and
  (``start``, default true) OP_INSTANCE_STARTUP, without ``dry_run`` and
  with only ``gnt:opcode:...`` reasons; a wrongly typed ``os`` or
  ``osparams`` is the queue daemon's 502.  ``PUT .../migrate`` and
  ``.../failover`` submit OP_INSTANCE_MIGRATE / OP_INSTANCE_FAILOVER with
  the body's parameters;
* a known path with an unsupported method is 501; Ganeti resources the
  simulator does not implement (network modify and tags, group changes,
  renames, disk operations...) are 501 with a message saying so; anything
  else is 404.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import http
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from snfd.ganeti_sim import opcodes
from snfd.ganeti_sim.jobqueue import JobQueue
from snfd.ganeti_sim.model import SOFTWARE_VERSION, ClusterConfig
from snfd.ganeti_sim.opcodes import BodyError

log = Logger(namespace="snfd.ganeti_sim.rapi")

FEATURES = ["instance-reinstall-reqv1", "node-evac-res1", "instance-create-reqv1",
            "node-migrate-reqv1"]
SERVER = f"Ganeti {SOFTWARE_VERSION} (snfd simulator)".encode()
REALM = 'Basic realm="Ganeti Remote API"'

_UNIMPLEMENTED = re.compile(
    r"^/2/(networks/[^/]+/(modify|tags)|groups/[^/]+/.+|filters|query|modify"
    r"|redistribute-config|instances-multi-alloc"
    r"|instances/[^/]+/(rename|disk|activate-disks"
    r"|deactivate-disks|recreate-disks|replace-disks|export|prepare-export|snapshot)"
    r"|nodes/[^/]+/.+|jobs/\d+/wait)(/.*)?$")


class RapiError(Exception):
    """An HTTP error answer in Ganeti's format."""

    def __init__(self, code: int, message: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(code, message)
        self.code = code
        self.message = message if message is not None else http.HTTPStatus(code).phrase
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": html.escape(self.message),
                "explain": http.HTTPStatus(self.code).description}


def _bad_request(message: str) -> RapiError:
    return RapiError(400, message)


Handler = Callable[..., Awaitable[Any]]


class RapiResource(resource.Resource):
    """The whole RAPI as one twisted.web resource.

    ``config`` is read for the views, ``queue`` receives the jobs.
    ``username``/``password`` are the one (write) user.
    """

    isLeaf = True

    def __init__(self, config: ClusterConfig, queue: JobQueue, username: str, password: str):
        super().__init__()
        self._config = config
        self._queue = queue
        self._credentials = f"{username}:{password}".encode()
        i = r"(?P<name>[^/]+)"
        routes: list[tuple[str, dict[str, Handler]]] = [
            (r"/version", {"GET": self._version}),
            (r"/2/info", {"GET": self._info}),
            (r"/2/features", {"GET": self._features}),
            (r"/2/os", {"GET": self._os}),
            (r"/2/tags", {"GET": self._cluster_tags, "PUT": self._cluster_tags_add,
                          "DELETE": self._cluster_tags_del}),
            (r"/2/nodes", {"GET": self._nodes}),
            (rf"/2/nodes/{i}", {"GET": self._node}),
            (r"/2/instances", {"GET": self._instances, "POST": self._create}),
            (rf"/2/instances/{i}", {"GET": self._instance, "DELETE": self._remove}),
            (rf"/2/instances/{i}/info", {"GET": self._instance_info}),
            (rf"/2/instances/{i}/startup", {"PUT": self._startup}),
            (rf"/2/instances/{i}/shutdown", {"PUT": self._shutdown}),
            (rf"/2/instances/{i}/reboot", {"POST": self._reboot}),
            (rf"/2/instances/{i}/modify", {"PUT": self._modify}),
            (rf"/2/instances/{i}/reinstall", {"POST": self._reinstall}),
            (rf"/2/instances/{i}/migrate", {"PUT": self._migrate}),
            (rf"/2/instances/{i}/failover", {"PUT": self._failover}),
            (rf"/2/instances/{i}/tags", {"GET": self._tags, "PUT": self._tags_add,
                                         "DELETE": self._tags_del}),
            (rf"/2/instances/{i}/console", {"GET": self._console}),
            (r"/2/networks", {"GET": self._networks, "POST": self._network_add}),
            (rf"/2/networks/{i}", {"GET": self._network, "DELETE": self._network_remove}),
            (rf"/2/networks/{i}/connect", {"PUT": self._network_connect}),
            (rf"/2/networks/{i}/disconnect", {"PUT": self._network_disconnect}),
            (r"/2/groups", {"GET": self._groups}),
            (rf"/2/groups/{i}", {"GET": self._group}),
            (r"/2/jobs", {"GET": self._jobs}),
            (r"/2/jobs/(?P<job>\d+)", {"GET": self._job, "DELETE": self._cancel}),
        ]
        self._routes = [(re.compile(f"^{p}$"), m) for p, m in routes]

    # -- plumbing -----------------------------------------------------------
    def render(self, request: server.Request) -> Any:
        request.setHeader(b"server", SERVER)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = defer.Deferred.fromCoroutine(self._handle(request))

        def respond(outcome: Any) -> None:
            if gone:
                return
            if isinstance(outcome, Failure):
                error: RapiError
                if isinstance(outcome.value, RapiError):
                    error = outcome.value
                else:
                    log.failure("RAPI request failed", outcome)
                    error = RapiError(500, str(outcome.value))
                for name, header in error.headers.items():
                    request.setHeader(name.encode(), header.encode())
                code, value = error.code, error.body()
            else:
                code, value = 200, outcome
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(value).encode("utf-8"))
            request.finish()

        d.addBoth(respond)
        return server.NOT_DONE_YET

    def _authorized(self, request: server.Request) -> bool:
        header = request.getHeader(b"authorization") or b""
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._credentials)

    async def _handle(self, request: server.Request) -> Any:
        if not self._authorized(request):
            raise RapiError(401, "Unauthorized", {"WWW-Authenticate": REALM})
        path = request.path.decode("utf-8", "replace")
        if len(path) > 1:
            path = path.rstrip("/")
        method = request.method.decode("ascii", "replace").upper()
        for pattern, methods in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            handler = methods.get(method)
            if handler is None:
                raise RapiError(501, f"Method {method} is unsupported for path {path}")
            body = self._body(request)
            return await handler(request, body, **match.groupdict())
        if _UNIMPLEMENTED.match(path):
            raise RapiError(501, f"The Ganeti simulator does not implement {method} {path}")
        raise RapiError(404)

    def _body(self, request: server.Request) -> Any:
        content = request.content
        raw = content.read() if content is not None else b""
        if not raw:
            return None
        ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            raise RapiError(415)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _bad_request("Unable to parse JSON data") from None

    @staticmethod
    def _query(request: server.Request, name: str) -> list[str]:
        args: dict[bytes, list[bytes]] = request.args or {}
        return [v.decode("utf-8", "replace") for v in args.get(name.encode(), [])]

    def _flag(self, request: server.Request, name: str, default: bool = False) -> bool:
        values = self._query(request, name)
        if not values:
            return default
        try:
            return bool(int(values[0]))
        except ValueError:
            raise _bad_request(f"Invalid value for parameter '{name}': {values[0]}") from None

    def _int(self, request: server.Request, name: str) -> int | None:
        values = self._query(request, name)
        if not values:
            return None
        try:
            return int(values[0])
        except ValueError:
            raise _bad_request(f"Invalid value for parameter '{name}': {values[0]}") from None

    @staticmethod
    def _object(body: Any) -> dict[str, Any]:
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise _bad_request(
                f"Body contents: Type is '{type(body).__name__}', but 'dict' is expected")
        return body

    async def _submit(self, op_id: str, params: dict[str, Any], handler: str,
                      dry_run: bool | None = None) -> int:
        try:
            op = opcodes.fill(op_id, params, dry_run=dry_run)
        except BodyError as e:
            raise _bad_request(str(e)) from None
        job_id, written = self._queue.submit([op], (f"gnt:library:rlib2:{handler}", ""))
        await written
        return job_id

    async def _submit_ops(self, ops: list[tuple[str, dict[str, Any]]]) -> int:
        """One job of several ops that the handler built itself: no
        ``dry_run`` and no ``gnt:library:rlib2`` reason entry, as Ganeti's
        reinstall handler submits them."""
        try:
            filled = [opcodes.fill(op_id, params) for op_id, params in ops]
        except BodyError as e:
            raise _bad_request(str(e)) from None
        job_id, written = self._queue.submit(filled, None)
        await written
        return job_id

    # -- cluster --------------------------------------------------------------
    async def _version(self, request: Any, body: Any) -> Any:
        return 2

    async def _info(self, request: Any, body: Any) -> Any:
        return self._config.info()

    async def _features(self, request: Any, body: Any) -> Any:
        return list(FEATURES)

    async def _os(self, request: Any, body: Any) -> Any:
        job_id = await self._submit("OP_OS_DIAGNOSE",
                                    {"output_fields": ["name", "variants"], "names": []}, "os")
        job = await self._queue.wait(job_id)
        if job["status"] != "success":
            raise RapiError(502, "Can't get OS list")
        names = []
        for name, variants in job["opresult"][0]:
            names += [f"{name}+{v}" for v in variants] if variants else [name]
        return names

    async def _cluster_tags(self, request: Any, body: Any) -> Any:
        return list(self._config.tags)

    async def _cluster_tags_add(self, request: Any, body: Any) -> Any:
        return await self._submit("OP_TAGS_SET",
                                  {"kind": "cluster", "tags": self._query(request, "tag")},
                                  "tags", dry_run=self._flag(request, "dry-run"))

    async def _cluster_tags_del(self, request: Any, body: Any) -> Any:
        return await self._submit("OP_TAGS_DEL",
                                  {"kind": "cluster", "tags": self._query(request, "tag")},
                                  "tags", dry_run=self._flag(request, "dry-run"))

    # -- nodes ----------------------------------------------------------------
    async def _nodes(self, request: Any, body: Any) -> Any:
        names = sorted(self._config.nodes)
        if self._flag(request, "bulk"):
            return [self._config.node_bulk(n) for n in names]
        return [{"id": n, "uri": f"/2/nodes/{n}"} for n in names]

    async def _node(self, request: Any, body: Any, name: str) -> Any:
        if name not in self._config.nodes:
            raise RapiError(404)
        node = self._config.node_bulk(name)
        node["secondary_ip"] = node["sip"]
        return node

    # -- instances ------------------------------------------------------------
    async def _instances(self, request: Any, body: Any) -> Any:
        names = sorted(self._config.instances)
        if self._flag(request, "bulk"):
            networks = self._config.network_names()
            return [self._config.instances[n].bulk(networks) for n in names]
        return [{"id": n, "uri": f"/2/instances/{n}"} for n in names]

    async def _instance(self, request: Any, body: Any, name: str) -> Any:
        inst = self._config.instances.get(name)
        if inst is None:
            raise RapiError(404)
        return inst.bulk(self._config.network_names())

    async def _create(self, request: Any, body: Any) -> Any:
        data = dict(self._object(body))
        if "__version__" not in data:
            raise _bad_request("Instance creation request version 0 is no longer supported")
        version = data.pop("__version__")
        if version != 1:
            raise _bad_request(f"Unsupported request data version {version}")
        for old, new in (("name", "instance_name"), ("os", "os_type")):
            if old in data:
                data[new] = data.pop(old)
        return await self._submit("OP_INSTANCE_CREATE", data, "instances",
                                  dry_run=self._flag(request, "dry-run"))

    async def _remove(self, request: Any, body: Any, name: str) -> Any:
        params = dict(self._object(body))
        params["instance_name"] = name
        params.setdefault("ignore_failures", False)
        timeout = self._int(request, "shutdown_timeout")
        if timeout is not None:
            params["shutdown_timeout"] = timeout
        return await self._submit("OP_INSTANCE_REMOVE", params, "instances_name",
                                  dry_run=self._flag(request, "dry-run"))

    async def _instance_info(self, request: Any, body: Any, name: str) -> Any:
        return await self._submit("OP_INSTANCE_QUERY_DATA",
                                  {"instances": [name], "static": self._flag(request, "static")},
                                  "instances_name_info")

    async def _startup(self, request: Any, body: Any, name: str) -> Any:
        params = dict(self._object(body))
        params.update(instance_name=name, force=self._flag(request, "force"),
                      no_remember=self._flag(request, "no_remember"))
        return await self._submit("OP_INSTANCE_STARTUP", params, "instances_name_startup",
                                  dry_run=self._flag(request, "dry-run"))

    async def _shutdown(self, request: Any, body: Any, name: str) -> Any:
        params = dict(self._object(body))
        params.update(instance_name=name, no_remember=self._flag(request, "no_remember"))
        return await self._submit("OP_INSTANCE_SHUTDOWN", params, "instances_name_shutdown",
                                  dry_run=self._flag(request, "dry-run"))

    async def _reboot(self, request: Any, body: Any, name: str) -> Any:
        params = dict(self._object(body))
        types = self._query(request, "type")
        params.update(instance_name=name, reboot_type=types[0] if types else "hard",
                      ignore_secondaries=self._flag(request, "ignore_secondaries"))
        timeout = self._int(request, "shutdown_timeout")
        if timeout is not None:
            params["shutdown_timeout"] = timeout
        return await self._submit("OP_INSTANCE_REBOOT", params, "instances_name_reboot",
                                  dry_run=self._flag(request, "dry-run"))

    async def _modify(self, request: Any, body: Any, name: str) -> Any:
        params = dict(self._object(body))
        params["instance_name"] = name
        for key in ("nics", "disks"):
            if isinstance(params.get(key), list):
                params[key] = [_legacy_mod(m) for m in params[key]]
        return await self._submit("OP_INSTANCE_SET_PARAMS", params, "instances_name_modify")

    async def _reinstall(self, request: Any, body: Any, name: str) -> Any:
        """``instance-reinstall-reqv1``: ``{"os", "start", "osparams"}`` (or
        the legacy ``?os=&nostartup=`` query) becomes one job: shutdown,
        reinstall, and startup unless ``start`` is false."""
        args: dict[bytes, list[bytes]] = request.args or {}
        if body:
            if args:
                raise _bad_request("Can't combine query and body parameters")
            data = body
        elif args:
            os_names = self._query(request, "os")
            data = {"os": os_names[0] if os_names else None,
                    "start": not self._flag(request, "nostartup")}
        else:
            data = {}
        if not isinstance(data, dict):
            raise _bad_request("Invalid body contents, not a dictionary")
        start = data.get("start", True)
        if not isinstance(start, bool):
            raise _bad_request(f"'start' parameter: Type is '{type(start).__name__}', but"
                               " 'bool' is expected")
        os_type, osparams = data.get("os"), data.get("osparams")
        # RAPI does not check these; the queue daemon refuses the job.
        for key, value, kind, reads in (("os_type", os_type, str, "String"),
                                        ("osparams", osparams, dict, "JSObject")):
            if value is not None and not isinstance(value, kind):
                raise RapiError(502, f"Failed to parse request: SubmitJob: Can't parse value"
                                     f" for '{key}': Unable to read {reads}")
        reinstall: dict[str, Any] = {"instance_name": name}
        if os_type is not None:
            reinstall["os_type"] = os_type
        if osparams is not None:
            reinstall["osparams"] = osparams
        ops: list[tuple[str, dict[str, Any]]] = [
            ("OP_INSTANCE_SHUTDOWN", {"instance_name": name}),
            ("OP_INSTANCE_REINSTALL", reinstall)]
        if start:
            ops.append(("OP_INSTANCE_STARTUP", {"instance_name": name, "force": False}))
        return await self._submit_ops(ops)

    async def _migrate(self, request: Any, body: Any, name: str) -> Any:
        params = self._static(dict(self._object(body)), instance_name=name)
        return await self._submit("OP_INSTANCE_MIGRATE", params, "instances_name_migrate")

    async def _failover(self, request: Any, body: Any, name: str) -> Any:
        params = self._static(dict(self._object(body)), instance_name=name)
        return await self._submit("OP_INSTANCE_FAILOVER", params, "instances_name_failover")

    async def _tags(self, request: Any, body: Any, name: str) -> Any:
        inst = self._config.instances.get(name)
        if inst is None:
            # What Ganeti 3.0.2 answers here (an internal error).
            raise RapiError(500, f"('Instance name {name} not found', 'unknown_entity')")
        return list(inst.tags)

    async def _tags_add(self, request: Any, body: Any, name: str) -> Any:
        return await self._submit(
            "OP_TAGS_SET", {"kind": "instance", "tags": self._query(request, "tag"),
                            "name": name},
            "instances_name_tags", dry_run=self._flag(request, "dry-run"))

    async def _tags_del(self, request: Any, body: Any, name: str) -> Any:
        return await self._submit(
            "OP_TAGS_DEL", {"kind": "instance", "tags": self._query(request, "tag"),
                            "name": name},
            "instances_name_tags", dry_run=self._flag(request, "dry-run"))

    async def _console(self, request: Any, body: Any, name: str) -> Any:
        inst = self._config.instances.get(name)
        if inst is None:
            # What Ganeti 3.0.2 answers here (an internal error).
            raise RapiError(500, "list index out of range")
        return {"instance": name, "kind": "msg",
                "message": f"Console not available for {inst.hypervisor} hypervisor"}

    # -- networks and groups ------------------------------------------------------
    @staticmethod
    def _static(params: dict[str, Any], **fixed: Any) -> dict[str, Any]:
        overwritten = set(params) & set(fixed)
        if overwritten:
            raise _bad_request(f"Can't overwrite static parameters {overwritten!r}")
        return {**params, **fixed}

    async def _networks(self, request: Any, body: Any) -> Any:
        names = sorted(self._config.networks)
        if self._flag(request, "bulk"):
            return [self._config.network_view(n) for n in names]
        return [{"name": n, "uri": f"/2/networks/{n}"} for n in names]

    async def _network(self, request: Any, body: Any, name: str) -> Any:
        if name not in self._config.networks:
            raise RapiError(404)
        return self._config.network_view(name)

    async def _network_add(self, request: Any, body: Any) -> Any:
        params = dict(self._object(body))
        if "name" in params:
            if "network_name" in params:
                raise _bad_request("Parameter 'name' was renamed to 'network_name', but"
                                   " both are specified")
            params["network_name"] = params.pop("name")
        return await self._submit("OP_NETWORK_ADD", params, "networks",
                                  dry_run=self._flag(request, "dry-run"))

    async def _network_remove(self, request: Any, body: Any, name: str) -> Any:
        params = self._static(dict(self._object(body)), network_name=name)
        return await self._submit("OP_NETWORK_REMOVE", params, "networks_name",
                                  dry_run=self._flag(request, "dry-run"))

    async def _network_connect(self, request: Any, body: Any, name: str) -> Any:
        params = self._static(dict(self._object(body)), network_name=name)
        return await self._submit("OP_NETWORK_CONNECT", params, "networks_name_connect",
                                  dry_run=self._flag(request, "dry-run"))

    async def _network_disconnect(self, request: Any, body: Any, name: str) -> Any:
        params = self._static(dict(self._object(body)), network_name=name)
        return await self._submit("OP_NETWORK_DISCONNECT", params,
                                  "networks_name_disconnect",
                                  dry_run=self._flag(request, "dry-run"))

    async def _groups(self, request: Any, body: Any) -> Any:
        if self._flag(request, "bulk"):
            return [self._config.group_view()]
        name = self._config.GROUP
        return [{"name": name, "uri": f"/2/groups/{name}"}]

    async def _group(self, request: Any, body: Any, name: str) -> Any:
        if name != self._config.GROUP:
            raise RapiError(404)
        return self._config.group_view()

    # -- jobs -------------------------------------------------------------------
    async def _jobs(self, request: Any, body: Any) -> Any:
        ids = [i for i in self._queue.job_ids() if self._queue.written(i)]
        if self._flag(request, "bulk"):
            return [self._queue.view(i, bulk=True) for i in ids]
        return [{"id": i, "uri": f"/2/jobs/{i}"} for i in ids]

    async def _job(self, request: Any, body: Any, job: str) -> Any:
        return self._queue.view(int(job))

    async def _cancel(self, request: Any, body: Any, job: str) -> Any:
        return await self._queue.cancel(int(job))


def _legacy_mod(mod: Any) -> Any:
    """A NIC/disk modification in the three-element form Ganeti stores:
    ``[action, identifier, params]`` (``-1`` for add/remove without one,
    ``modify`` when the old form gives an identifier as the action)."""
    if isinstance(mod, list) and len(mod) == 2 and isinstance(mod[1], dict):
        action, params = mod
        if action in ("add", "remove"):
            return [action, -1, params]
        return ["modify", action, params]
    return mod
