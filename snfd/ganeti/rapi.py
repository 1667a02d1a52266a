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

Failures: ``RapiUnavailable`` when the cluster cannot be reached or did not
answer within the timeout (the API turns it into 503), ``RapiError`` when
it answered an HTTP error status (401/403/404/400/5xx) with Ganeti's
``{"code", "message", "explain"}`` (message HTML-unescaped).
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote

import attrs
from twisted.internet import task

from snfd.httpclient import OutboundError, Target

FINAL_STATUSES = frozenset({"success", "error", "canceled"})


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
        """``POST /2/instances`` with ``__version__: 1`` added; returns the job id."""
        params = [("dry-run", "1")] if dry_run else None
        return await self._job_id("POST", "/2/instances",
                                  body={**body, "__version__": 1}, params=params)

    async def delete_instance(self, name: str, shutdown_timeout: int | None = None) -> int:
        """``DELETE /2/instances/<name>``; job id."""
        body = None if shutdown_timeout is None else {"shutdown_timeout": shutdown_timeout}
        return await self._job_id("DELETE", _instance(name), body=body)

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
        (beparams, hvparams, nics, disks, osparams, os_name, hotplug...)."""
        return await self._job_id("PUT", _instance(name, "modify"), body=params)

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
        deadline = self._reactor.seconds() + timeout
        while True:
            job = await self.job(job_id)
            if job is None:
                raise RapiUnavailable(self.cluster, f"job {job_id} is unknown")
            if job["status"] in FINAL_STATUSES:
                return job
            if self._reactor.seconds() >= deadline:
                raise RapiUnavailable(
                    self.cluster,
                    f"job {job_id} not finished within {timeout:g}s"
                    f" (status {job['status']})")
            await task.deferLater(self._reactor, poll, lambda: None)


def _instance(name: str, *rest: str) -> str:
    return "/".join(["/2/instances", quote(name, safe=""), *rest])


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
