"""What every handler of the compute API reads from a request and how it
answers without a view: query parameters, paging, ids in paths, the
caller's projects, the dialect (``compute_views``) the request came
through, JSON bodies and empty answers.  ``compute_api`` and
``flavor_api`` share these."""

from __future__ import annotations

import re
from typing import Any

from snfd import errors
from snfd.web.app import json_object, read_json
from snfd.web.auth import user_of


def query(request: Any, name: str) -> str | None:
    """The first value of query parameter ``name`` (400 if not UTF-8)."""
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    try:
        return str(values[0].decode("utf-8"))
    except UnicodeDecodeError:
        raise errors.BadRequest(f"The parameter {name} is not UTF-8.") from None


def count(value: str, what: str) -> int:
    """A non-negative integer query parameter, or 400."""
    if not value.isdigit() or len(value) > 18:
        raise errors.BadRequest(f"{what} must be a non-negative integer, not {value[:40]!r}.")
    return int(value)


def page(request: Any, items: list[Any], what: str, key: Any = None) -> list[Any]:
    """``items`` after the one whose id (``key`` of it; default its
    ``id``) is ``marker`` (400 when none is), at most ``limit`` of them."""
    marker = query(request, "marker")
    if marker is not None:
        ids = [str(key(i) if key is not None else i.id) for i in items]
        if marker not in ids:
            raise errors.BadRequest(f"marker [{marker[:40]}] not found: no such {what.lower()}.")
        items = items[ids.index(marker) + 1:]
    limit = query(request, "limit")
    if limit is not None:
        items = items[:count(limit, "limit")]
    return items


def int_id(value: str, what: str) -> int:
    """A serial id in a path; 404 when it is not one."""
    if not value.isdigit() or len(value) > 18:
        raise errors.NotFound(f"{what} {value[:40]} not found.")
    return int(value)


def scope_of(request: Any) -> str | None:
    """The project the caller's token is scoped to, when it is not the
    user's base project."""
    p = user_of(request)
    return p.project if p.project and p.project != p.user else None


def projects_of(request: Any) -> list[str]:
    """The caller's projects that grant access: its base project (its own
    uuid) and the one its token is scoped to."""
    p = user_of(request)
    assert p.user is not None
    scope = scope_of(request)
    return [p.user] + ([scope] if scope is not None else [])


def is_admin(request: Any) -> bool:
    return bool(user_of(request).is_admin)


def require_admin(request: Any, what: str) -> None:
    """403 unless the caller is an administrator."""
    if not is_admin(request):
        raise errors.Forbidden(f"Policy doesn't allow {what} to be performed.")


def views_of(request: Any) -> Any:
    """The dialect (``compute_views``) of the prefix the request came through."""
    return request.compute_views


def empty(request: Any, code: int) -> bytes:
    request.setResponseCode(code)
    return b""


def body_of(request: Any, max_body: int, required: bool = True) -> Any:
    """The request's JSON body (400 unless JSON)."""
    kind = request.getHeader(b"content-type")
    value = read_json(request, max_body, required=required)
    if value is not None and kind is not None and b"json" not in kind.lower():
        raise errors.BadRequest("Only JSON requests are supported"
                                " (Content-Type: application/json).")
    return value


def object_of(request: Any, key: str, max_body: int) -> dict[str, Any]:
    """The ``key`` object of the request's JSON body, or 400."""
    body = json_object(body_of(request, max_body))
    value = body.get(key)
    if not isinstance(value, dict):
        raise errors.BadRequest(f'The request needs a "{key}" object.')
    return value


_VERSION = re.compile(r"([1-9][0-9]*)\.(0|[1-9][0-9]*)")


def microversion(request: Any, lowest: tuple[int, int],
                 highest: tuple[int, int]) -> tuple[int, int]:
    """The compute microversion a request asks for (``OpenStack-API-Version:
    compute X.Y``, else ``X-OpenStack-Nova-API-Version: X.Y``; ``latest``
    is ``highest``; none: ``lowest``), as Nova decides: 400 for a malformed
    one, 406 outside ``lowest``..``highest``."""
    asked = None
    for raw in request.requestHeaders.getRawHeaders(b"openstack-api-version") or []:
        for part in raw.decode("latin-1").split(","):
            service, _, value = part.strip().partition(" ")
            if service.lower() == "compute":
                asked = value.strip()
    if asked is None:
        legacy = request.requestHeaders.getRawHeaders(b"x-openstack-nova-api-version")
        asked = legacy[-1].decode("latin-1").strip() if legacy else None
    if asked is None:
        return lowest
    if asked.lower() == "latest":
        return highest
    m = _VERSION.fullmatch(asked)
    if m is None:
        raise errors.BadRequest(f"API Version String {asked[:40]} is of invalid format. Must"
                                " be of format MajorNum.MinorNum.")
    version = (int(m[1]), int(m[2]))
    if not lowest <= version <= highest:
        raise errors.NotAcceptable(
            f"Version {asked[:40]} is not supported by the API. Minimum is"
            f" {lowest[0]}.{lowest[1]} and maximum is {highest[0]}.{highest[1]}.")
    return version


def at_least(request: Any, minor: int) -> bool:
    """Whether the request's microversion is 2.``minor`` or later."""
    version: tuple[int, int] = getattr(request, "microversion", (2, 1))
    return version >= (2, minor)
