"""Quota values shared by the quota holder (identity) and the services that
charge quota (storage, compute): provisions, holdings, commissions and the
errors of the commission protocol.

The protocol itself is ``snfd.interfaces.IQuotaHolder``; the in-process
holder is ``snfd.identity.quotaholder``, the HTTP client
``snfd.quota.remote``, the services' own serial bookkeeping
``snfd.quota.serials``, and the one runner every charging change goes
through (issue, change, settle) ``snfd.quota.charged``.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from snfd import errors


@attrs.frozen
class Provision:
    """One change of one holding: ``quantity`` > 0 imports, < 0 releases."""

    holder: str
    source: str | None
    resource: str
    quantity: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.holder, self.source or "", self.resource)

    def as_json(self) -> dict[str, Any]:
        return {"holder": self.holder, "source": self.source,
                "resource": self.resource, "quantity": self.quantity}


def user_and_project(user: str, project: str, resource: str,
                     quantity: int) -> list[Provision]:
    """The paired provisions Synnefo's clients issue for one change: the
    user's holding in the project and the project's own holding."""
    return [Provision(f"user:{user}", f"project:{project}", resource, quantity),
            Provision(f"project:{project}", None, resource, quantity)]


@attrs.frozen
class Resource:
    """A resource definition a component registers at start."""

    name: str
    description: str
    unit: str | None
    service_type: str
    service_origin: str
    ui_visible: bool = True
    api_visible: bool = True
    allow_in_projects: bool = True
    # Used only when the resource is new; an administrator changes them
    # later with `snf-manage resource-modify`.
    base_default: int = 0
    project_default: int = 0


@attrs.frozen
class Holding:
    holder: str
    source: str | None
    resource: str
    limit: int
    usage_min: int
    usage_max: int

    @property
    def usage(self) -> int:
        return self.usage_max

    @property
    def pending(self) -> int:
        return self.usage_max - self.usage_min


@attrs.frozen
class Commission:
    serial: int
    clientkey: str
    name: str
    issue_time: datetime.datetime
    provisions: tuple[Provision, ...]


@attrs.frozen
class Resolution:
    accepted: list[int]
    rejected: list[int]
    failed: list[tuple[int, errors.Fault]]


class QuotaError(errors.Fault):
    """A commission that cannot be issued; nothing was changed.

    ``data`` carries the reference's details (the provision, the error's
    name, and for capacity errors the limit and usage)."""

    def __init__(self, message: str, provision: Provision,
                 limit: int | None = None, usage: int | None = None):
        super().__init__(message)
        self.provision = provision
        self.limit, self.usage = limit, usage
        self.data: dict[str, Any] = {"provision": provision.as_json(),
                                     "name": type(self).__name__}
        if limit is not None:
            self.data["limit"] = limit
            self.data["usage"] = usage

    def body(self) -> dict[str, Any]:
        out = super().body()
        out[self.name]["data"] = self.data
        return out


class NoHoldingError(QuotaError):
    code, name = 404, "itemNotFound"


class NoCapacityError(QuotaError):
    code, name = 413, "overLimit"


class NoQuantityError(QuotaError):
    code, name = 413, "overLimit"
