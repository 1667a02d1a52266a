"""What every handler of the compute API reads from a request and how it
answers without a view: query parameters, paging, ids in paths, the
caller's projects, the dialect (``compute_views``) the request came
through, JSON bodies and empty answers; Nova's paging (``paged``,
``next_links``, ``window``) and change windows (``changes_window``).  The
compute API's handler modules share these."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from snfd import errors
from snfd.web.app import json_object, read_json
from snfd.web.auth import user_of

UTC = datetime.UTC
T = TypeVar("T")
#: The longest page Nova answers (its ``[api] max_limit``).
MAX_LIMIT = 1000
_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
            "%Y-%m-%d %H:%M:%S")


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


def parse_time(value: str, what: str) -> datetime.datetime:
    """A period bound as Nova takes it (UTC when naive), or 400."""
    text = value.strip()
    for fmt in _FORMATS:
        try:
            when = datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return when.replace(tzinfo=UTC)
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.BadRequest(f"Invalid {what} time {text[:40]!r}: ISO 8601, such as"
                                " 2026-12-03T10:00:00.") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def only_params(request: Any, allowed: Collection[str]) -> None:
    """400 for a query parameter outside ``allowed`` (Nova's query
    schemas without additional properties)."""
    unknown = sorted(k.decode("utf-8", "replace") for k in (request.args or {})
                     if k.decode("utf-8", "replace") not in allowed)
    if unknown:
        raise errors.BadRequest("Invalid input for query parameters: additional properties"
                                f" are not allowed ({', '.join(unknown)[:200]} unexpected).")


def changes_window(request: Any, before: bool = True,
                   ) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """The ``changes-since`` and (``before``: also) ``changes-before``
    times of a request, or None; 400 when one is not a time or the window
    is empty, in Nova's words."""
    since_text = query(request, "changes-since")
    before_text = query(request, "changes-before") if before else None
    since = parse_time(since_text, "changes-since") if since_text is not None else None
    until = parse_time(before_text, "changes-before") if before_text is not None else None
    if since is not None and until is not None and until < since:
        raise errors.BadRequest("The value of changes-since must be less than or equal to"
                                " changes-before.")
    return since, until


def in_window(when: datetime.datetime | None, since: datetime.datetime | None,
              until: datetime.datetime | None) -> bool:
    """Whether a change at ``when`` (None: never changed) is inside the
    window (no bound: everything is)."""
    if since is None and until is None:
        return True
    if when is None:
        return False
    return (since is None or when >= since) and (until is None or when <= until)


def paged(request: Any, items: Sequence[T], key: Callable[[T], str],
          keep: Callable[[T], bool] | None = None) -> list[T]:
    """Nova's paging of sorted ``items``: those after the one whose
    ``key`` is ``marker`` (400 when none is), that ``keep`` (the filters),
    at most ``limit`` (and never more than ``MAX_LIMIT``)."""
    found = list(items)
    marker = query(request, "marker")
    if marker is not None:
        ids = [key(i) for i in found]
        if marker not in ids:
            raise errors.BadRequest(f"Marker {marker[:80]} could not be found.")
        found = found[ids.index(marker) + 1:]
    if keep is not None:
        found = [i for i in found if keep(i)]
    limit = query(request, "limit")
    most = MAX_LIMIT if limit is None else min(count(limit, "limit"), MAX_LIMIT)
    return found[:most]


def next_links(request: Any, shown: int, last: str | None,
               collection: str) -> list[dict[str, str]]:
    """Nova's collection links: ``next`` (this request's query with the
    ``marker`` of the last item shown) when the page is full, else none."""
    limit = query(request, "limit")
    most = MAX_LIMIT if limit is None else min(count(limit, "limit"), MAX_LIMIT)
    if not most or shown != most or last is None:
        return []
    params = {k.decode("utf-8", "replace"): v[0].decode("utf-8", "replace")
              for k, v in sorted((request.args or {}).items()) if v}
    params["marker"] = last
    v = views_of(request)
    return [{"rel": "next", "href": f"{v.base}{v.prefix}/{collection}?{urlencode(params)}"}]


def window(request: Any, items: list[T]) -> list[T]:
    """``offset`` then ``limit`` of a listing (Nova's paging of server
    groups and of its volume proxies)."""
    offset = query(request, "offset")
    if offset is not None:
        items = items[count(offset, "offset"):]
    limit = query(request, "limit")
    if limit is not None:
        items = items[:count(limit, "limit")]
    return items
