"""The Ganeti RAPI client: one per backend, on the node's shared HTTP pool.

``GanetiRapi`` talks Ganeti's Remote API v2 (``/2/...``) over HTTPS with basic
auth, TLS verified against the backend's own certificate (a pinned
self-signed ``rapi.pem``; ``verify_hostname`` False because Ganeti's cert
names the cluster, not the address we dial), through a
``snfd.httpclient.TargetClient`` (one persistent pool per target).

Vocabulary follows real Ganeti 3.0 (reference/ganeti.md section 8):
- every write answers 200 with a bare JSON integer: the job id;
- semantic errors show up only in the job (``opstatus``/``opresult``);
- ``GET /2/jobs/<id>`` for an unknown id answers 200 with every field null:
  ``job()`` returns ``None`` then;
- a job's ``status`` is one of queued, waiting, running, canceling, success,
  error, canceled; the terminal set is ``FINAL_STATUSES``.

Job dependencies (``depends``, accepted by every write that submits an
opcode: ``create_instance``'s body, ``modify``'s params, the network calls)
are a list of ``[job_id, [statuses]]``: the job stays ``queued`` until each
job it names is final, then fails (``OpExecError`` "Dependency job N
finished with status 'error', not one of 'success' as required", or
"Dependency error: Job N not found") unless that job's status is one of
``statuses``; an empty list accepts any final status.  A negative job id
is relative to the new job's own id (Ganeti 3.0 turned ``-1`` in job 41
into ``40``, measured); statuses other than success/error/canceled are a
400.  ``depends_on(job_id)`` builds the common "after this one succeeded".

Failures: ``RapiUnavailable`` when the cluster cannot be reached or did not
answer within the timeout (the API turns it into 503), ``RapiError`` when
it answered an HTTP error status (401/403/404/400/5xx) with Ganeti's
``{"code", "message", "explain"}`` (message HTML-unescaped).
"""

from __future__ import annotations

import html
import json
import math
from typing import Any
from urllib.parse import quote

import attrs
from twisted.internet import task

from snfd.httpclient import OutboundError, Target

FINAL_STATUSES = frozenset({"success", "error", "canceled"})


def depends_on(*job_ids: int, statuses: tuple[str, ...] = ("success",)) -> list[list[Any]]:
    """A ``depends`` value: wait for ``job_ids`` and require one of ``statuses``."""
    return [[int(job_id), list(statuses)] for job_id in job_ids]


class RapiUnavailable(Exception):
    """The cluster could not be reached or did not answer in time."""

    def __init__(self, cluster: str, reason: str):
        super().__init__(f"Ganeti cluster {cluster} is unavailable: {reason}")
        self.cluster = cluster
        self.reason = reason


class RapiError(Exception):
    """The cluster answered with an HTTP error status."""

    def __init__(self, cluster: str, status: int, message: str):
        super().__init__(f"Ganeti cluster {cluster} answered {status}: {message}")
        self.cluster = cluster
        self.status = status
        self.message = message


@attrs.frozen
class RapiTarget:
    """How to reach one Ganeti cluster's RAPI (a registered backend)."""

    cluster: str                  # backend clustername, labels errors/metrics
    url: str                      # https://host:5080
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    certificate: str = ""         # PEM; "" = platform trust store
    timeout: float = 30.0


class GanetiRapi:
    """Ganeti RAPI v2 calls for one cluster.  All methods are ``async``.

    ``reactor`` (time only, for ``wait_job``) defaults to the HTTP pool's.
    """

    def __init__(self, http_pool: Any, target: RapiTarget, reactor: Any = None):
        self.target = target
        self.cluster = target.cluster
        self._reactor = reactor if reactor is not None else http_pool._reactor
        self._client = http_pool.client(Target(
            name=target.cluster,
            base_url=target.url,
            username=target.username or None,
            password=target.password or None,
            ca_certificate=target.certificate or None,
            # Ganeti's certificate names the cluster, not the address dialled.
            verify_hostname=not target.certificate,
            timeout=target.timeout,
        # The newest settings of a backend win (its certificate may change).
        ), replace_trust=True)

    async def _call(self, method: str, path: str, *, body: Any = None,
                    params: list[tuple[str, str]] | None = None) -> Any:
        """One RAPI exchange: the parsed answer, or ``RapiUnavailable`` /
        ``RapiError``."""
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode("utf-8")
            kwargs["headers"] = {"Content-Type": "application/json"}
        if params:
            kwargs["params"] = params
        try:
            status, answer = await self._client.json_request(method, path, **kwargs)
        except OutboundError as e:  # OutboundTimeout included
            raise RapiUnavailable(self.cluster, e.reason) from None
        if status >= 400:
            raise RapiError(self.cluster, status, _error_message(status, answer))
        return answer

    async def _job_id(self, method: str, path: str, *, body: Any = None,
                      params: list[tuple[str, str]] | None = None) -> int:
        answer = await self._call(method, path, body=body, params=params)
        return _as_job_id(self.cluster, answer)

    # -- cluster ---------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        """``GET /2/info``."""
        return _expect(self.cluster, await self._call("GET", "/2/info"), dict)

    async def nodes(self) -> list[dict[str, Any]]:
        """``GET /2/nodes?bulk=1`` (mfree, mtotal, dfree, dtotal, pinst_cnt,
        ctotal, vm_capable, drained, offline, name, ...)."""
        return _expect(self.cluster,
                       await self._call("GET", "/2/nodes", params=[("bulk", "1")]), list)

    async def cluster_tags(self) -> list[str]:
        """``GET /2/tags``: the cluster's tags."""
        answer = _expect(self.cluster, await self._call("GET", "/2/tags"), list)
        return [str(tag) for tag in answer]

    async def add_cluster_tags(self, tags: list[str], dry_run: bool = False) -> int:
        """``PUT /2/tags?tag=..&tag=..`` (OP_TAGS_SET kind cluster); job id.

        A tag ``htools:iextags:<prefix>`` makes every instance tag that
        starts with ``<prefix>`` (a plain string prefix: ``htools:iextags:svc``
        covers ``svc:dns`` and ``svcdns``) an exclusion tag: the iallocator
        then puts no new instance on a node whose primary instances (running
        or not) carry one of its exclusion tags; when no node is left the
        create fails "... failure reasons: FailTags: <nodes>"
        (insufficient_resources).  An explicit ``pnode`` bypasses this."""
        params = [("tag", t) for t in tags]
        if dry_run:
            params.append(("dry-run", "1"))
        return await self._job_id("PUT", "/2/tags", params=params)

    async def delete_cluster_tags(self, tags: list[str]) -> int:
        """``DELETE /2/tags?tag=..`` (OP_TAGS_DEL kind cluster); job id."""
        return await self._job_id("DELETE", "/2/tags", params=[("tag", t) for t in tags])

    # -- instances -------------------------------------------------------
    async def instances(self) -> list[dict[str, Any]]:
        """``GET /2/instances?bulk=1``."""
        return _expect(self.cluster,
                       await self._call("GET", "/2/instances", params=[("bulk", "1")]),
                       list)

    async def instance(self, name: str) -> dict[str, Any] | None:
        """``GET /2/instances/<name>``; None when Ganeti answers 404."""
        try:
            answer = await self._call("GET", _instance(name))
        except RapiError as e:
            if e.status == 404:
                return None
            raise
        return _expect(self.cluster, answer, dict)

    async def create_instance(self, body: dict[str, Any], dry_run: bool = False) -> int:
        """``POST /2/instances`` with ``__version__: 1`` added; returns the job id.

        ``body["depends"]`` (e.g. ``depends_on(connect_job)``) is passed on
        as it is: the create waits for those jobs (see the module docstring).
        A NIC ``{"network": name, "ip": "pool"}`` takes the network's next
        free address; a network NIC must not name a ``mode`` or ``link``
        (it gets those of the network's connection to the node's group).
        """
        params = [("dry-run", "1")] if dry_run else None
        return await self._job_id("POST", "/2/instances",
                                  body={**body, "__version__": 1}, params=params)

    async def delete_instance(self, name: str, shutdown_timeout: int | None = None,
                              depends: list[list[Any]] | None = None) -> int:
        """``DELETE /2/instances/<name>`` (after the jobs ``depends`` names);
        job id."""
        body: dict[str, Any] = {}
        if shutdown_timeout is not None:
            body["shutdown_timeout"] = shutdown_timeout
        if depends is not None:
            body["depends"] = depends
        return await self._job_id("DELETE", _instance(name), body=body or None)

    async def startup(self, name: str) -> int:
        """``PUT /2/instances/<name>/startup``; job id."""
        return await self._job_id("PUT", _instance(name, "startup"))

    async def shutdown(self, name: str, timeout: int | None = None) -> int:
        """``PUT /2/instances/<name>/shutdown`` (body ``{"timeout": n}`` if given)."""
        body = None if timeout is None else {"timeout": timeout}
        return await self._job_id("PUT", _instance(name, "shutdown"), body=body)

    async def reboot(self, name: str, reboot_type: str = "hard",
                     shutdown_timeout: int | None = None) -> int:
        """``POST /2/instances/<name>/reboot?type=...``; job id."""
        params = [("type", reboot_type)]
        if shutdown_timeout is not None:
            params.append(("shutdown_timeout", str(shutdown_timeout)))
        return await self._job_id("POST", _instance(name, "reboot"), params=params)

    async def modify(self, name: str, **params: Any) -> int:
        """``PUT /2/instances/<name>/modify`` with ``params`` as the body
        (beparams, hvparams, nics, disks, osparams, os_name, hotplug,
        ``depends``...).  NIC changes are ``[["add", {...}]]``,
        ``[["remove", <index|name|uuid>, {}]]`` or ``[["modify", ident, {...}]]``."""
        return await self._job_id("PUT", _instance(name, "modify"), body=params)

    async def reinstall(self, name: str, os: str, osparams: dict[str, Any] | None = None,
                        start: bool = True) -> int:
        """``POST /2/instances/<name>/reinstall`` (``instance-reinstall-reqv1``
        body ``{"os", "start", "osparams"}``); job id.

        Ganeti makes ONE job of it: OP_INSTANCE_SHUTDOWN (succeeds on a
        stopped instance too), OP_INSTANCE_REINSTALL (re-runs the OS create
        script; fails "Instance 'x' has no disks", wrong_input, on a
        diskless instance, after the shutdown already stopped it), and
        OP_INSTANCE_STARTUP when ``start``.  An op that fails leaves the
        following ones ``error`` "Preceding opcode failed".

        ``osparams`` REPLACE the instance's OS parameters, they are not
        merged; None (left out of the body) leaves the instance with none
        at all, so pass the full set every time.  Keys the OS does not
        declare fail the reinstall op (OpExecError).
        """
        body: dict[str, Any] = {"os": os, "start": bool(start)}
        if osparams is not None:
            body["osparams"] = dict(osparams)
        return await self._job_id("POST", _instance(name, "reinstall"), body=body)

    async def migrate(self, name: str, mode: str | None = None,
                      target_node: str | None = None, cleanup: bool = False,
                      allow_failover: bool = False) -> int:
        """``PUT /2/instances/<name>/migrate`` (OP_INSTANCE_MIGRATE); job id.

        ``mode`` is "live" or "non-live" (None: the hypervisor's default);
        ``target_node`` only for shared-storage and diskless instances
        (None: the cluster's iallocator picks one), a drbd instance always
        moves to its secondary.  Refusals come in the job: file and plain
        instances ("Instance's disk layout 'file' does not allow
        migrations", wrong_state), the primary as target (wrong_state), no
        other node fitting (insufficient_resources), a stopped instance
        without ``allow_failover`` (wrong_state).
        """
        body: dict[str, Any] = {"cleanup": bool(cleanup),
                                "allow_failover": bool(allow_failover)}
        if mode is not None:
            body["mode"] = mode
        if target_node is not None:
            body["target_node"] = target_node
        return await self._job_id("PUT", _instance(name, "migrate"), body=body)

    async def failover(self, name: str, target_node: str | None = None,
                       ignore_consistency: bool = False) -> int:
        """``PUT /2/instances/<name>/failover`` (OP_INSTANCE_FAILOVER: stop on
        the primary, start on the target); job id.  Targets and refusals as
        for ``migrate``."""
        body: dict[str, Any] = {"ignore_consistency": bool(ignore_consistency)}
        if target_node is not None:
            body["target_node"] = target_node
        return await self._job_id("PUT", _instance(name, "failover"), body=body)

    async def add_tags(self, name: str, tags: list[str]) -> int:
        """``PUT /2/instances/<name>/tags?tag=..&tag=..``; job id."""
        return await self._job_id("PUT", _instance(name, "tags"),
                                  params=[("tag", t) for t in tags])

    async def delete_tags(self, name: str, tags: list[str]) -> int:
        """``DELETE /2/instances/<name>/tags?tag=..``; job id."""
        return await self._job_id("DELETE", _instance(name, "tags"),
                                  params=[("tag", t) for t in tags])

    async def console(self, name: str) -> dict[str, Any]:
        """``GET /2/instances/<name>/console``."""
        return _expect(self.cluster, await self._call("GET", _instance(name, "console")),
                       dict)

    # -- networks and node groups ------------------------------------------
    async def networks(self) -> list[dict[str, Any]]:
        """``GET /2/networks?bulk=1``: name, network, gateway, network6,
        gateway6, mac_prefix, free_count, reserved_count, map, group_list
        (``[group, mode, link, vlan]``), inst_list, external_reservations
        (one comma-separated string), ctime, mtime, uuid, serial_no, tags."""
        answer = _expect(self.cluster,
                         await self._call("GET", "/2/networks", params=[("bulk", "1")]),
                         list)
        return [net for net in answer if isinstance(net, dict)]

    async def network(self, name: str) -> dict[str, Any] | None:
        """``GET /2/networks/<name>`` (the fields of ``networks``); None on 404."""
        try:
            answer = await self._call("GET", _network(name))
        except RapiError as e:
            if e.status == 404:
                return None
            raise
        return _expect(self.cluster, answer, dict)

    async def groups(self) -> list[str]:
        """``GET /2/groups``: the node group names (``default`` on a new cluster)."""
        answer = _expect(self.cluster, await self._call("GET", "/2/groups"), list)
        return [str(g["name"]) for g in answer if isinstance(g, dict) and "name" in g]

    async def create_network(self, name: str, *, subnet: str | None = None,
                             gateway: str | None = None, subnet6: str | None = None,
                             gateway6: str | None = None, mac_prefix: str | None = None,
                             add_reserved_ips: list[str] | None = None,
                             tags: tuple[str, ...] | list[str] = (),
                             conflicts_check: bool = False,
                             depends: list[list[Any]] | None = None) -> int:
        """``POST /2/networks`` (OP_NETWORK_ADD); job id.

        Only the arguments given go into the body (``network_name``,
        ``network`` = ``subnet``, ``gateway``, ``network6``, ``gateway6``,
        ``mac_prefix``, ``add_reserved_ips``, ``tags``, ``conflicts_check``,
        ``depends``).  Ganeti requires ``subnet`` (an IPv4 /16 to /30; a 400
        without it); the network and broadcast addresses and the gateway
        become external reservations.  ``conflicts_check`` true also
        reserves node addresses that fall in the subnet.
        """
        body: dict[str, Any] = {"network_name": name}
        for key, value in (("network", subnet), ("gateway", gateway), ("network6", subnet6),
                           ("gateway6", gateway6), ("mac_prefix", mac_prefix),
                           ("add_reserved_ips", add_reserved_ips)):
            if value is not None:
                body[key] = list(value) if key == "add_reserved_ips" else value
        if tags:
            body["tags"] = list(tags)
        body["conflicts_check"] = bool(conflicts_check)
        if depends is not None:
            body["depends"] = depends
        return await self._job_id("POST", "/2/networks", body=body)

    async def connect_network(self, name: str, group: str, mode: str, link: str, *,
                              vlan: str = "", conflicts_check: bool = False,
                              depends: list[list[Any]] | None = None) -> int:
        """``PUT /2/networks/<name>/connect`` (OP_NETWORK_CONNECT); job id.

        ``mode`` is bridged, routed or openvswitch; NICs on the network in
        ``group`` get ``mode``/``link``/``vlan`` as their nicparams.
        Connecting twice succeeds with a warning and changes nothing.
        """
        body: dict[str, Any] = {"group_name": group, "network_mode": mode,
                                "network_link": link, "network_vlan": vlan,
                                "conflicts_check": bool(conflicts_check)}
        if depends is not None:
            body["depends"] = depends
        return await self._job_id("PUT", _network(name, "connect"), body=body)

    async def disconnect_network(self, name: str, group: str, *,
                                 depends: list[list[Any]] | None = None) -> int:
        """``PUT /2/networks/<name>/disconnect`` (OP_NETWORK_DISCONNECT); job id.
        The job fails (``wrong_state``) while a NIC in ``group`` is on the network."""
        body: dict[str, Any] = {"group_name": group}
        if depends is not None:
            body["depends"] = depends
        return await self._job_id("PUT", _network(name, "disconnect"), body=body)

    async def delete_network(self, name: str, *,
                             depends: list[list[Any]] | None = None) -> int:
        """``DELETE /2/networks/<name>`` (OP_NETWORK_REMOVE); job id.  The
        job fails ("Network still connected", ``wrong_state``) while the
        network is connected to a group."""
        body = None if depends is None else {"depends": depends}
        return await self._job_id("DELETE", _network(name), body=body)

    # -- jobs ------------------------------------------------------------
    async def jobs(self) -> list[dict[str, Any]]:
        """``GET /2/jobs?bulk=1`` (id, status, ops, opstatus, received_ts,
        start_ts, end_ts, summary; no oplog/opresult)."""
        answer = _expect(self.cluster,
                         await self._call("GET", "/2/jobs", params=[("bulk", "1")]), list)
        return [job for job in answer if isinstance(job, dict)]

    async def job(self, job_id: int) -> dict[str, Any] | None:
        """``GET /2/jobs/<id>``; None for an unknown job (all-null answer)."""
        answer = await self._call("GET", f"/2/jobs/{int(job_id)}")
        if not isinstance(answer, dict):
            return None
        if answer.get("id") is None or answer.get("status") is None:
            return None
        return answer

    async def cancel_job(self, job_id: int) -> tuple[bool, str]:
        """``DELETE /2/jobs/<id>``: Ganeti's ``[done, message]``."""
        answer = await self._call("DELETE", f"/2/jobs/{int(job_id)}")
        if (isinstance(answer, list | tuple) and len(answer) == 2
                and isinstance(answer[0], bool)):
            return answer[0], str(answer[1])
        raise RapiUnavailable(self.cluster, f"unexpected answer to a job cancel: {answer!r}")

    async def wait_job(self, job_id: int, poll: float = 0.2,
                       timeout: float = 120.0) -> dict[str, Any]:
        """Poll ``job()`` until its status is final; the final job dict.
        Raises ``RapiUnavailable`` on timeout or when the job is unknown."""
        # Counted in polls, not read from the clock: a clock set back
        # does not stretch the wait.
        polls = max(1, math.ceil(timeout / poll))
        while True:
            job = await self.job(job_id)
            if job is None:
                raise RapiUnavailable(self.cluster, f"job {job_id} is unknown")
            if job["status"] in FINAL_STATUSES:
                return job
            polls -= 1
            if polls <= 0:
                raise RapiUnavailable(
                    self.cluster,
                    f"job {job_id} not finished within {timeout:g}s"
                    f" (status {job['status']})")
            await task.deferLater(self._reactor, poll, lambda: None)


def _instance(name: str, *rest: str) -> str:
    return "/".join(["/2/instances", quote(name, safe=""), *rest])


def _network(name: str, *rest: str) -> str:
    return "/".join(["/2/networks", quote(name, safe=""), *rest])


def _error_message(status: int, answer: Any) -> str:
    if isinstance(answer, dict):
        message = answer.get("message")
        if message is None:
            message = answer.get("explain")
        if message is not None:
            return html.unescape(str(message))
    return f"HTTP {status}"


def _as_job_id(cluster: str, answer: Any) -> int:
    # A job id is a bare JSON integer (older Ganeti: a numeric string).
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer
    if isinstance(answer, str) and answer.isdigit():
        return int(answer)
    raise RapiUnavailable(cluster, f"expected a job id, got {answer!r}")


def _expect(cluster: str, answer: Any, kind: type) -> Any:
    if not isinstance(answer, kind):
        raise RapiUnavailable(
            cluster, f"expected a JSON {kind.__name__}, got {type(answer).__name__}")
    return answer


class RapiPool:
    """``GanetiRapi`` clients by backend, built once per target and rebuilt
    when a backend's RAPI settings change (``snf-manage backend-modify``).

    Equal targets share one client; a new target for a cluster replaces
    the client of that cluster's previous target.
    """

    def __init__(self, http_pool: Any):
        self._http_pool = http_pool
        self._clients: dict[RapiTarget, GanetiRapi] = {}

    def client(self, target: RapiTarget) -> GanetiRapi:
        client = self._clients.get(target)
        if client is None:
            client = GanetiRapi(self._http_pool, target)
            for old in [t for t in self._clients if t.cluster == target.cluster]:
                del self._clients[old]
            self._clients[target] = client
        return client
