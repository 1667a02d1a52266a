"""The quota holder over HTTP: ``IQuotaHolder`` for services on nodes that
do not run the identity service, talking to the account API
(``/account/v1.0``) of one that does, with a component token.

The token decides the ``clientkey``: the identity service takes the
component from it, so the ``clientkey`` (and ``component``) arguments must
be the token's component; a holder built with one component's token acts
for that component only.

Errors come back as the in-process holder raises them: the quota errors of
an issue (with their provision, limit and usage), ``NotFound`` for a
commission that is not pending, ``BadRequest``/``Conflict`` for what the
identity service refuses.  Anything that means the quota holder cannot be
used (no answer in time, connection failures, a refused token, a server
error) is ``snfd.errors.ServiceUnavailable``; after a timeout the outcome
of an issue is unknown and the service's reconciliation (``pending``)
settles it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import attrs
from zope.interface import implementer

from snfd import errors
from snfd.httpclient import HTTPClientPool, OutboundError, Target
from snfd.interfaces import IQuotaHolder
from snfd.quota import (
    Commission,
    Holding,
    NoCapacityError,
    NoHoldingError,
    NoQuantityError,
    Provision,
    QuotaError,
    Resolution,
    Resource,
)

VERSION = "v1.0"

_QUOTA_ERRORS: dict[str, type[QuotaError]] = {
    "NoHoldingError": NoHoldingError,
    "NoCapacityError": NoCapacityError,
    "NoQuantityError": NoQuantityError,
}

# Faults the identity service answers that a service may act on; any
# other status means the quota holder is unusable from here.
_FAULTS: dict[int, type[errors.Fault]] = {
    400: errors.BadRequest,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.OverLimit,
}


def versioned_url(account_url: str) -> str:
    """The account API's base URL: ``account_url`` as the service catalog
    gives it (``.../account/v1.0``) or the bare mount (``.../account``)."""
    url = account_url.rstrip("/")
    return url if url.endswith("/" + VERSION) else f"{url}/{VERSION}"


def _fault_parts(body: Any) -> tuple[str, str, dict[str, Any]]:
    """(name, message, inner) of a fault body; empty strings when it is not one."""
    if isinstance(body, dict) and len(body) == 1:
        name, inner = next(iter(body.items()))
        if isinstance(inner, dict):
            message = inner.get("message")
            return name, message if isinstance(message, str) else "", inner
    return "", "", {}


def fault_from_body(status: int, body: Any) -> errors.Fault:
    """The ``Fault`` an OpenStack fault body stands for (by its code)."""
    _, message, inner = _fault_parts(body)
    code = inner.get("code", status)
    cls = _FAULTS.get(code if isinstance(code, int) else status)
    message = message or f"the quota holder answered {status}"
    if cls is None:
        fault = errors.Fault(message)
        fault.code = code if isinstance(code, int) else status
        return fault
    return cls(message, details=inner.get("details") or None)


def _provision(data: Any) -> Provision | None:
    if not isinstance(data, dict):
        return None
    holder, source = data.get("holder"), data.get("source")
    resource, quantity = data.get("resource"), data.get("quantity")
    if (not isinstance(holder, str) or not isinstance(resource, str)
            or not (source is None or isinstance(source, str))
            or not isinstance(quantity, int) or isinstance(quantity, bool)):
        return None
    return Provision(holder, source, resource, quantity)


def quota_error(body: Any) -> QuotaError | None:
    """The quota error an issue's 404/413 fault body carries in ``data``."""
    _, message, inner = _fault_parts(body)
    data = inner.get("data")
    if not isinstance(data, dict):
        return None
    cls = _QUOTA_ERRORS.get(data.get("name", ""))
    provision = _provision(data.get("provision"))
    if cls is None or provision is None:
        return None
    limit, usage = data.get("limit"), data.get("usage")
    if not isinstance(limit, int) or not isinstance(usage, int):
        limit = usage = None
    return cls(message, provision, limit=limit, usage=usage)


def _issue_time(value: Any) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise errors.ServiceUnavailable(
            f"The quota holder sent a bad issue time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when


@implementer(IQuotaHolder)
class RemoteQuotaHolder:
    """``IQuotaHolder`` through the account API of a remote identity service.

    @param http: the node's outbound client pool.
    @param account_url: the account API's URL (``https://host/account/v1.0``
        or ``https://host/account``).
    @param component_token: the token of the component this holder acts for.
    @param timeout: seconds each call may take.
    """

    def __init__(self, http: HTTPClientPool, account_url: str, component_token: str,
                 timeout: float = 30.0, ca_certificate: str | bytes | None = None):
        self._client = http.client(Target(name="quota-holder",
                                          base_url=versioned_url(account_url),
                                          timeout=timeout, ca_certificate=ca_certificate))
        self._token = component_token

    async def _call(self, method: str, path: str, json: Any = None,
                    params: dict[str, str] | None = None) -> tuple[int, Any]:
        try:
            status, body = await self._client.json_request(
                method, path, json=json, params=params,
                headers={"X-Auth-Token": self._token})
        except OutboundError as e:
            raise errors.ServiceUnavailable(f"The quota holder is unavailable: {e}") from None
        if status in (401, 403) or status >= 500:
            _, message, _ = _fault_parts(body)
            raise errors.ServiceUnavailable(
                f"The quota holder refused {method} {path} ({status}): {message}")
        return status, body

    def _fail(self, status: int, body: Any) -> errors.Fault:
        fault = fault_from_body(status, body)
        if type(fault) is errors.Fault:
            return errors.ServiceUnavailable(
                f"The quota holder answered {status}: {fault.message}")
        return fault

    def _ok(self, status: int, body: Any, expected: type) -> Any:
        if not 200 <= status < 300:
            raise self._fail(status, body)
        if not isinstance(body, expected):
            raise errors.ServiceUnavailable(
                f"The quota holder answered {status} with an unexpected body.")
        return body

    async def register_resources(self, component: str, resources: Iterable[Resource]) -> None:
        body = {"resources": [attrs.asdict(r) for r in resources]}
        status, reply = await self._call("POST", "service/resources", json=body)
        self._ok(status, reply, dict)

    async def component_resources(self, component: str) -> list[Resource]:
        """``GET service/resources``: the calling component's definitions
        (``component`` is the one of this holder's token)."""
        status, reply = await self._call("GET", "service/resources")
        body = self._ok(status, reply, dict)
        try:
            return sorted((Resource(**item) for item in body["resources"]),
                          key=lambda r: r.name)
        except (KeyError, TypeError):
            raise errors.ServiceUnavailable("The quota holder answered an unexpected list of"
                                            " resources.") from None

    async def issue(self, clientkey: str, provisions: Iterable[Provision], name: str = "",
                    force: bool = False, auto_accept: bool = False) -> int:
        body = {"provisions": [p.as_json() for p in provisions], "name": name,
                "force": force, "auto_accept": auto_accept}
        status, reply = await self._call("POST", "commissions", json=body)
        if status in (404, 413):
            error = quota_error(reply)
            if error is not None:
                raise error
        serial = self._ok(status, reply, dict).get("serial")
        if not isinstance(serial, int) or isinstance(serial, bool):
            raise errors.ServiceUnavailable("The quota holder answered without a serial.")
        return serial

    async def resolve(self, clientkey: str, accept: Iterable[int] = (),
                      reject: Iterable[int] = ()) -> Resolution:
        body = {"accept": list(accept), "reject": list(reject)}
        status, reply = await self._call("POST", "commissions/action", json=body)
        reply = self._ok(status, reply, dict)
        try:
            failed = [(int(serial), fault_from_body(400, fault))
                      for serial, fault in reply.get("failed", [])]
            return Resolution(accepted=[int(s) for s in reply["accepted"]],
                              rejected=[int(s) for s in reply["rejected"]], failed=failed)
        except (KeyError, TypeError, ValueError):
            raise errors.ServiceUnavailable(
                "The quota holder answered a resolution in an unexpected shape.") from None

    async def pending(self, clientkey: str) -> list[int]:
        status, reply = await self._call("GET", "commissions")
        return sorted(int(s) for s in self._ok(status, reply, list))

    async def commission(self, clientkey: str, serial: int) -> Commission:
        status, reply = await self._call("GET", f"commissions/{int(serial)}")
        if status == 404:
            raise errors.NotFound(f"serial {serial} is not a pending commission")
        reply = self._ok(status, reply, dict)
        provisions = [_provision(p) for p in reply.get("provisions", [])]
        if any(p is None for p in provisions):
            raise errors.ServiceUnavailable("The quota holder sent a malformed provision.")
        return Commission(serial=int(reply.get("serial", serial)), clientkey=clientkey,
                          name=str(reply.get("name", "")),
                          issue_time=_issue_time(reply.get("issue_time")),
                          provisions=tuple(p for p in provisions if p is not None))

    async def quotas(self, holders: Iterable[str] | None = None,
                     sources: Iterable[str | None] | None = None,
                     resources: Iterable[str] | None = None) -> list[Holding]:
        """The holdings of this component's resources (the account API
        shows a service only those), from ``service_quotas`` and
        ``service_project_quotas``."""
        wanted = None if holders is None else set(holders)
        users = projects = None
        if wanted is not None:
            users = sorted(h[5:] for h in wanted if h.startswith("user:"))
            projects = sorted(h[8:] for h in wanted if h.startswith("project:"))
        found: list[Holding] = []
        if users is None or users:
            found += await self._user_holdings(users)
        if projects is None or projects:
            found += await self._project_holdings(projects)
        source_set = None if sources is None else {s or None for s in sources}
        resource_set = None if resources is None else set(resources)
        return sorted(
            (h for h in found
             if (wanted is None or h.holder in wanted)
             and (source_set is None or h.source in source_set)
             and (resource_set is None or h.resource in resource_set)),
            key=lambda h: (h.holder, h.source or "", h.resource))

    async def _user_holdings(self, users: list[str] | None) -> list[Holding]:
        params = None if users is None else {"user": ",".join(users)}
        status, reply = await self._call("GET", "service_quotas", params=params)
        if status == 404 and users is not None:
            return []
        out = []
        try:
            for user, by_project in self._ok(status, reply, dict).items():
                for project, by_resource in by_project.items():
                    for resource, q in by_resource.items():
                        out.append(Holding(f"user:{user}", f"project:{project}", resource,
                                           q["limit"], q["usage"] - q["pending"], q["usage"]))
        except (AttributeError, KeyError, TypeError):
            raise errors.ServiceUnavailable(
                "The quota holder answered quotas in an unexpected shape.") from None
        return out

    async def _project_holdings(self, projects: list[str] | None) -> list[Holding]:
        params = None if projects is None else {"project": ",".join(projects)}
        status, reply = await self._call("GET", "service_project_quotas", params=params)
        if status == 404 and projects is not None:
            return []
        out = []
        try:
            for project, by_resource in self._ok(status, reply, dict).items():
                for resource, q in by_resource.items():
                    out.append(Holding(f"project:{project}", None, resource,
                                       q["project_limit"],
                                       q["project_usage"] - q["project_pending"],
                                       q["project_usage"]))
        except (AttributeError, KeyError, TypeError):
            raise errors.ServiceUnavailable(
                "The quota holder answered quotas in an unexpected shape.") from None
        return out
