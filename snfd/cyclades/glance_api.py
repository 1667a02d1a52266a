"""Glance v2 (``/v2``), mounted by ``snfd.cyclades.image_api.ImageAPI`` on
its Klein app, over ``snfd.cyclades.glance.GlanceImages``::

    GET    /v2/images                 list (filters, sort, paging below)
    POST   /v2/images                 create (queued): 201
    GET    /v2/images/<id>            show
    PATCH  /v2/images/<id>            JSON patch (v2.1 and v2.0 media types): 200
    DELETE /v2/images/<id>            image and file: 204 (403 while protected)
    PUT    /v2/images/<id>/file       upload: 204 (409 unless queued, 413 quota)
    GET    /v2/images/<id>/file       download: 200, 206 with Range, 204 no data
    PUT    /v2/images/<id>/stage      stage data: 204 (status uploading)
    POST   /v2/images/<id>/import     {"method": {"name": "glance-direct"}}: 202
    POST   /v2/images/<id>/actions/deactivate|reactivate   204
    PUT    /v2/images/<id>/tags/<tag> 204;  DELETE 204 (404 when absent)
    GET    /v2/images/<id>/tasks    {"tasks": []}: no tasks API
    GET    /v2/images/<id>/members[/<member>]
    POST   /v2/images/<id>/members    {"member": id}: 200 (pending)
    PUT    /v2/images/<id>/members/<member>   {"status": ...}: 200 (the member)
    DELETE /v2/images/<id>/members/<member>   204 (the owner)
    GET    /v2/schemas/image|images|member|members
    GET    /v2/info/import            glance-direct only

Listing: ``limit`` (default 25, at most 1000), ``marker``, ``sort``
(``k[:dir],...``) or ``sort_key``/``sort_dir``; filters ``name``,
``owner``, ``status``, ``visibility`` (default: public, own, and shared
ones accepted), ``member_status`` (shared-with-me images; default
accepted), ``tag`` (repeatable, all), ``os_hidden`` (default false),
``protected``, ``size_min``/``size_max``, ``disk_format``,
``container_format``, and any other field or property by exact value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from snfd import errors
from snfd.cyclades.glance import (
    GLANCE_CONTAINER_FORMATS,
    GLANCE_DISK_FORMATS,
    IMPORT_METHODS,
    GlanceImages,
    parse_patch,
)
from snfd.cyclades.images import VISIBILITIES, Image
from snfd.pithos.streams import send_range
from snfd.web.app import json_body, json_object, read_json
from snfd.web.auth import Principal, user_of

GLANCE = "/v2"

STATUS = {"AVAILABLE": "active", "UNAVAILABLE": "saving", "ERROR": "killed",
          "DELETED": "deleted", "QUEUED": "queued", "UPLOADING": "uploading",
          "IMPORTING": "importing", "DEACTIVATED": "deactivated"}
MEMBER_FILTERS = ("accepted", "pending", "rejected", "all")
SORT_KEYS = ("id", "name", "status", "size", "disk_format", "container_format",
             "created_at", "updated_at", "visibility", "min_disk", "min_ram", "owner")
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
# Bytes of image data one request may carry (Glance's image_size_cap).  The
# body is spooled by the web server before the token is checked, so this is
# the bound the object store sets on a buffered object body (5 GiB): larger
# images go up as Pithos files with the hashmap protocol (``snf file
# upload``) and are registered, as Synnefo's users do.
MAX_IMAGE = 5 * 1024 ** 3
# Query parameters that are not filters.
_CONTROL = frozenset({"limit", "marker", "sort", "sort_key", "sort_dir", "visibility",
                      "member_status", "tag", "os_hidden", "size_min", "size_max",
                      "status", "protected"})
_FIELDS = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "owner", "size",
    "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "disk_format",
    "container_format", "min_disk", "min_ram", "tags", "created_at", "updated_at", "file",
    "self", "schema", "locations", "direct_url", "stores"})
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _iso_z(value: Any) -> str:
    return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))


def glance_image(image: Image) -> dict[str, Any]:
    """An image as Glance v2 shows it; properties are extra keys (those
    named like a Glance field are left out)."""
    out: dict[str, Any] = {k: v for k, v in image.properties.items() if k not in _FIELDS}
    if image.description and "description" not in out:
        out["description"] = image.description
    out.update({
        "id": image.id,
        "name": None if image.nameless else image.name,
        "status": STATUS.get(image.status, "queued"),
        "visibility": image.visibility,
        "protected": image.protected,
        "os_hidden": image.os_hidden,
        "owner": image.owner,
        "size": None if image.status == "QUEUED" else image.size,
        "virtual_size": None,
        "checksum": image.md5 or None,
        "os_hash_algo": "sha512" if image.sha512 else None,
        "os_hash_value": image.sha512 or None,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
        "tags": list(image.tags),
        "created_at": _iso_z(image.created_at),
        "updated_at": _iso_z(image.updated_at),
        "file": f"{GLANCE}/images/{image.id}/file",
        "self": f"{GLANCE}/images/{image.id}",
        "schema": f"{GLANCE}/schemas/image",
    })
    return out


def glance_member(image: Image, member: str) -> dict[str, Any]:
    for m in image.memberships:
        if m.member == member:
            return {"member_id": member, "image_id": image.id, "status": m.status,
                    "created_at": _iso_z(m.created_at), "updated_at": _iso_z(m.updated_at),
                    "schema": f"{GLANCE}/schemas/member"}
    raise errors.NotFound(f"{member} is not a member of image {image.id}.")


def _members_visible(image: Image, caller: tuple[str, str | None]) -> list[str]:
    """The members the ``caller`` (its user and project, see ``_as``) may
    see: all for the owner, itself for a member."""
    return [m.member for m in image.memberships
            if image.owner in caller or m.member in caller]


# -- schemas ---------------------------------------------------------------------

def _image_schema() -> dict[str, Any]:
    text = {"type": ["null", "string"], "maxLength": 255}
    props: dict[str, Any] = {
        "id": {"type": "string", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-"
               "([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
               "description": "An identifier for the image"},
        "name": {**text, "description": "Descriptive name for the image"},
        "status": {"type": "string", "readOnly": True, "enum": sorted(set(STATUS.values()))},
        "visibility": {"type": "string", "enum": list(VISIBILITIES)},
        "protected": {"type": "boolean"},
        "os_hidden": {"type": "boolean"},
        "checksum": {"type": ["null", "string"], "readOnly": True, "maxLength": 32},
        "os_hash_algo": {"type": ["null", "string"], "readOnly": True, "maxLength": 64},
        "os_hash_value": {"type": ["null", "string"], "readOnly": True, "maxLength": 128},
        "owner": {"type": ["null", "string"], "readOnly": True, "maxLength": 255},
        "size": {"type": ["null", "integer"], "readOnly": True},
        "virtual_size": {"type": ["null", "integer"], "readOnly": True},
        "container_format": {"type": ["null", "string"],
                             "enum": [None, *GLANCE_CONTAINER_FORMATS]},
        "disk_format": {"type": ["null", "string"], "enum": [None, *GLANCE_DISK_FORMATS]},
        "created_at": {"type": "string", "readOnly": True},
        "updated_at": {"type": "string", "readOnly": True},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
        "direct_url": {"type": "string", "readOnly": True},
        "min_ram": {"type": "integer"},
        "min_disk": {"type": "integer"},
        "self": {"type": "string", "readOnly": True},
        "file": {"type": "string", "readOnly": True},
        "schema": {"type": "string", "readOnly": True},
        "locations": {"type": "array", "readOnly": True},
    }
    return {"name": "image", "properties": props,
            "additionalProperties": {"type": "string"},
            "links": [{"rel": "self", "href": "{self}"},
                      {"rel": "enclosure", "href": "{file}"},
                      {"rel": "describedby", "href": "{schema}"}]}


def _member_schema() -> dict[str, Any]:
    return {"name": "member", "properties": {
        "member_id": {"type": "string"}, "image_id": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "accepted", "rejected"]},
        "created_at": {"type": "string"}, "updated_at": {"type": "string"},
        "schema": {"type": "string", "readOnly": True}}}


def _list_schema(name: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "properties": {
        name: {"type": "array", "items": item},
        "schema": {"type": "string"}, "first": {"type": "string"},
        "next": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}]}


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "image": _image_schema, "member": _member_schema,
    "images": lambda: _list_schema("images", _image_schema()),
    "members": lambda: _list_schema("members", _member_schema()),
}


# -- listing ----------------------------------------------------------------------

def _one(args: dict[str, list[str]], name: str) -> str | None:
    values = args.get(name)
    return values[-1] if values else None


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise errors.BadRequest("Invalid 'limit': it must be an integer.") from None
    if limit < 0:
        raise errors.BadRequest("Invalid 'limit': it may not be negative.")
    return min(limit, MAX_LIMIT)


def _order(args: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Glance's ``sort=k1:dir,k2`` or ``sort_key``/``sort_dir`` (repeatable)."""
    sort = _one(args, "sort")
    if sort is not None:
        if "sort_key" in args or "sort_dir" in args:
            raise errors.BadRequest("Use either 'sort' or 'sort_key'/'sort_dir'.")
        order = []
        for part in sort.split(","):
            key, _, direction = part.strip().partition(":")
            order.append((key.strip(), direction.strip() or "desc"))
    else:
        keys = args.get("sort_key") or ["created_at"]
        dirs = args.get("sort_dir") or ["desc"]
        if len(dirs) not in (1, len(keys)):
            raise errors.BadRequest("Give one 'sort_dir', or one per 'sort_key'.")
        order = list(zip(keys, dirs * len(keys) if len(dirs) == 1 else dirs, strict=True))
    for key, direction in order:
        if key not in SORT_KEYS:
            raise errors.BadRequest(f"Invalid sort key {key[:60]!r}: one of"
                                    f" {', '.join(SORT_KEYS)}.")
        if direction not in ("asc", "desc"):
            raise errors.BadRequest(f"Invalid sort direction {direction[:60]!r}: asc or desc.")
    return order


def _sorted(images: list[Image], order: list[tuple[str, str]]) -> list[Image]:
    out = sorted(images, key=lambda i: i.id)
    for key, direction in reversed(order):
        out.sort(key=functools.partial(_sort_value, key=key), reverse=direction == "desc")
    return out


def _sort_value(image: Image, key: str) -> Any:
    if key == "status":
        return STATUS.get(image.status, "")
    if key == "name":
        return "" if image.nameless else image.name
    return getattr(image, key)


def _int_arg(args: dict[str, list[str]], key: str) -> int | None:
    raw = _one(args, key)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.BadRequest(f"Invalid '{key}': it must be an integer.") from None


def _flag_arg(args: dict[str, list[str]], key: str) -> bool | None:
    raw = _one(args, key)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise errors.BadRequest(f"Invalid '{key}': true or false.")
    return raw.lower() == "true"


def _matcher(caller: tuple[str, str | None], args: dict[str, list[str]]) -> Callable[[Image], bool]:
    """The listing's rule (see the module docstring) for ``args`` and the
    ``caller`` (its user and project, see ``_as``)."""
    visibility = _one(args, "visibility")
    if visibility is not None and visibility not in (*VISIBILITIES, "all"):
        raise errors.BadRequest(f"Invalid 'visibility': one of {', '.join(VISIBILITIES)},"
                                " all.")
    member_status = _one(args, "member_status") or "accepted"
    if member_status not in MEMBER_FILTERS:
        raise errors.BadRequest(f"Invalid 'member_status': one of {', '.join(MEMBER_FILTERS)}.")
    hidden = _flag_arg(args, "os_hidden") or False
    protected = _flag_arg(args, "protected")
    size_min, size_max = _int_arg(args, "size_min"), _int_arg(args, "size_max")
    status = _one(args, "status")
    tags = args.get("tag") or []
    for key, allowed in (("disk_format", GLANCE_DISK_FORMATS),
                         ("container_format", GLANCE_CONTAINER_FORMATS)):
        value = _one(args, key)
        if value is not None and value not in allowed:
            raise errors.BadRequest(f"Invalid '{key}': one of {', '.join(allowed)}.")
    exact = {k: v[-1] for k, v in args.items() if k not in _CONTROL and v}

    def shown(image: Image) -> dict[str, Any]:
        return glance_image(image)

    def matches(image: Image) -> bool:
        own = image.owner == caller[0]
        if visibility not in (None, "all") and image.visibility != visibility:
            return False
        if not own and image.visibility == "shared":
            mine = [m for m in image.memberships if m.member in caller]
            if not mine and image.is_public:
                pass
            elif not mine or (member_status != "all" and mine[0].status != member_status):
                return False
        if image.visibility == "community" and not own and visibility != "community":
            return False
        if image.os_hidden != hidden:
            return False
        if protected is not None and image.protected != protected:
            return False
        if status is not None and STATUS.get(image.status) != status.lower():
            return False
        if size_min is not None and image.size < size_min:
            return False
        if size_max is not None and image.size > size_max:
            return False
        if any(t not in image.tags for t in tags):
            return False
        if exact:
            body = shown(image)
            for key, want in exact.items():
                have = body.get(key)
                if have is None or str(have).lower() != want.lower() if isinstance(have, bool) \
                        else str(have) != want:
                    return False
        return True

    return matches


# -- the routes -------------------------------------------------------------------

def _args(request: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, values in (request.args or {}).items():
        try:
            out[key.decode("utf-8")] = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise errors.BadRequest("The query string is not valid UTF-8.") from None
    return out


def _who(request: Any) -> tuple[str, bool]:
    principal: Principal = user_of(request)
    assert principal.user is not None
    return principal.user, principal.is_admin


def _as(request: Any) -> tuple[str, str | None]:
    """Who the caller is to image members: its user and the project its
    token is scoped to (``None`` when unscoped).  Glance's members are
    projects; a user's base project has the user's uuid as its id."""
    principal: Principal = user_of(request)
    assert principal.user is not None
    return principal.user, principal.project


def _no_content(request: Any) -> bytes:
    request.setResponseCode(204)
    return b""


def body_limit(method: bytes, path: bytes) -> int | None:
    """The largest body of a Glance request to ``path`` (below the mount):
    image data for uploads and stages, ``None`` (the mount's JSON limit)
    for the rest."""
    parts = path.split(b"?", 1)[0].rstrip(b"/").split(b"/")
    if method == b"PUT" and len(parts) >= 4 and parts[-4:-2] == [b"v2", b"images"] \
            and parts[-1] in (b"file", b"stage"):
        return MAX_IMAGE
    return None


class GlanceAPI:
    """Glance v2's routes (see the module docstring) on a Klein ``app``.

    @param images: the ``GlanceImages``.
    @param route: ``route(methods, path, handler)`` adds a route to the
        app the API is part of.
    """

    def __init__(self, images: GlanceImages,
                 route: Callable[[tuple[str, ...], str, Any], None]):
        self.images = images
        self.registry = images.registry
        for methods, path, handler in (
            (("GET",), "/images", self.list),
            (("POST",), "/images", self.create),
            (("DELETE", "PATCH"), "/images", self.no_image),
            (("GET",), "/images/<image_id>", self.show),
            (("PATCH",), "/images/<image_id>", self.update),
            (("DELETE",), "/images/<image_id>", self.delete),
            (("PUT",), "/images/<image_id>/file", self.upload),
            (("GET",), "/images/<image_id>/file", self.download),
            (("PUT",), "/images/<image_id>/stage", self.stage),
            (("POST",), "/images/<image_id>/import", self.import_),
            (("POST",), "/images/<image_id>/actions/<action>", self.action),
            (("PUT", "DELETE"), "/images/<image_id>/tags/<tag>", self.tag),
            (("GET",), "/images/<image_id>/members", self.members),
            (("POST",), "/images/<image_id>/members", self.add_member),
            (("GET",), "/images/<image_id>/members/<member>", self.member),
            (("PUT",), "/images/<image_id>/members/<member>", self.update_member),
            (("DELETE",), "/images/<image_id>/members/<member>", self.remove_member),
            (("GET",), "/images/<image_id>/tasks", self.tasks),
            (("GET",), "/schemas/<name>", self.schema),
            (("GET",), "/info/import", self.info_import),
        ):
            route(methods, GLANCE + path, handler)

    async def list(self, request: Any) -> bytes:
        caller = _as(request)
        user = caller[0]
        if request.path.endswith(b"/"):
            # ``/v2/images/``: an image path with an empty id, as Glance has it.
            raise errors.NotFound("No image id in the path.")
        args = _args(request)
        limit = _limit(_one(args, "limit"))
        marker = _one(args, "marker")
        order = _order(args)
        matches = _matcher(caller, args)
        images = _sorted([i for i in await self.registry.list(user, project=caller[1])
                          if matches(i)], order)
        if marker is not None:
            ids = [i.id for i in images]
            if marker not in ids:
                raise errors.BadRequest(f"Invalid marker: image {marker[:64]} not found.")
            images = images[ids.index(marker) + 1:]
        page = images[:limit]
        out: dict[str, Any] = {"images": [glance_image(i) for i in page],
                               "first": f"{GLANCE}/images", "schema": f"{GLANCE}/schemas/images"}
        if len(images) > limit and page:
            query = [(k, v) for k, values in sorted(args.items())
                     if k not in ("marker", "limit") for v in values]
            query += [("marker", page[-1].id), ("limit", str(limit))]
            out["next"] = f"{GLANCE}/images?{urlencode(query)}"
        return json_body(request, out)

    async def create(self, request: Any) -> bytes:
        user, _ = _who(request)
        body = json_object(read_json(request))
        image = await self.images.create(user, body)
        request.setHeader(b"location", f"{GLANCE}/images/{image.id}".encode())
        return json_body(request, glance_image(image), code=201)

    async def no_image(self, request: Any) -> bytes:
        """An image path without an id (``DELETE /v2/images/``): 404 as
        Glance answers."""
        _who(request)
        raise errors.NotFound("No image id in the path.")

    async def show(self, request: Any, image_id: str) -> bytes:
        user, project = _as(request)
        return json_body(request, glance_image(await self.registry.get(user, image_id, project)))

    async def update(self, request: Any, image_id: str) -> bytes:
        user, admin = _who(request)
        given = (request.getHeader(b"content-type") or b"").decode("latin-1")
        media = given.split(";", 1)[0].strip().lower()
        ops = parse_patch(read_json(request), media)
        return json_body(request, glance_image(
            await self.images.update(user, image_id, ops, admin)))

    async def delete(self, request: Any, image_id: str) -> bytes:
        user, admin = _who(request)
        await self.images.delete(user, image_id, admin)
        return _no_content(request)

    async def upload(self, request: Any, image_id: str) -> bytes:
        user, _ = _who(request)
        await self.images.upload(user, image_id, request.content)
        return _no_content(request)

    async def stage(self, request: Any, image_id: str) -> bytes:
        user, _ = _who(request)
        await self.images.upload(user, image_id, request.content, stage=True)
        return _no_content(request)

    async def import_(self, request: Any, image_id: str) -> bytes:
        user, _ = _who(request)
        body = json_object(read_json(request))
        await self.images.import_(user, image_id, body.get("method"))
        request.setResponseCode(202)
        return b""

    async def download(self, request: Any, image_id: str) -> bytes:
        user, admin = _who(request)
        data = await self.images.data(user, image_id, admin, _as(request)[1])
        if data.hashmap is None:
            return _no_content(request)
        size = data.hashmap.size
        start, end = 0, size
        ranged = request.getHeader(b"range")
        if ranged is not None:
            start, end = _range(ranged.decode("latin-1"), size)
            request.setResponseCode(206)
            request.setHeader(b"content-range", f"bytes {start}-{end - 1}/{size}".encode())
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", str(end - start).encode())
        if data.image.md5 and ranged is None:
            request.setHeader(b"content-md5", data.image.md5.encode())
        if request.method == b"HEAD":
            return b""
        await send_range(request, data.blocks, data.hashmap.hashes, size, start, end,
                         block_size=data.block_size)
        return b""

    async def action(self, request: Any, image_id: str, action: str) -> bytes:
        user, admin = _who(request)
        if action == "deactivate":
            await self.images.deactivate(user, image_id, admin)
        elif action == "reactivate":
            await self.images.reactivate(user, image_id, admin)
        else:
            raise errors.NotFound(f"No action {action[:40]!r}: deactivate or reactivate.")
        return _no_content(request)

    async def tag(self, request: Any, image_id: str, tag: str) -> bytes:
        user, _ = _who(request)
        if request.method == b"PUT":
            await self.images.add_tag(user, image_id, tag)
        else:
            await self.images.remove_tag(user, image_id, tag)
        return _no_content(request)

    async def members(self, request: Any, image_id: str) -> bytes:
        caller = _as(request)
        image = await self.registry.get(caller[0], image_id, caller[1])
        if image.visibility != "shared" and image.owner == caller[0] and not image.memberships:
            raise errors.Forbidden(f"Image {image_id} is not shared: it has no members.")
        return json_body(request, {
            "members": [glance_member(image, m) for m in _members_visible(image, caller)],
            "schema": f"{GLANCE}/schemas/members"})

    async def member(self, request: Any, image_id: str, member: str) -> bytes:
        caller = _as(request)
        image = await self.registry.get(caller[0], image_id, caller[1])
        if member not in _members_visible(image, caller):
            raise errors.NotFound(f"{member} is not a member of image {image_id}.")
        return json_body(request, glance_member(image, member))

    async def add_member(self, request: Any, image_id: str) -> bytes:
        user, _ = _who(request)
        body = json_object(read_json(request))
        image = await self.images.add_member(user, image_id, body.get("member"))
        member = "".join(str(body.get("member")).split()).lower()
        return json_body(request, glance_member(image, member))

    async def update_member(self, request: Any, image_id: str, member: str) -> bytes:
        caller = _as(request)
        body = json_object(read_json(request))
        image = await self.images.set_member_status(caller, image_id, member,
                                                    body.get("status"))
        return json_body(request, glance_member(image, member))

    async def remove_member(self, request: Any, image_id: str, member: str) -> bytes:
        user, _ = _who(request)
        await self.images.remove_member(user, image_id, member)
        return _no_content(request)

    async def tasks(self, request: Any, image_id: str) -> bytes:
        """``GET /v2/images/<id>/tasks`` (Glance 2.12): none, ever (imports
        are done at once; there is no tasks API)."""
        user, project = _as(request)
        await self.registry.get(user, image_id, project)
        return json_body(request, {"tasks": []})

    async def schema(self, request: Any, name: str) -> bytes:
        _who(request)
        make = SCHEMAS.get(name)
        if make is None:
            raise errors.NotFound(f"No schema {name[:40]!r}.")
        return json_body(request, make())

    async def info_import(self, request: Any) -> bytes:
        _who(request)
        return json_body(request, {"import-methods": {
            "description": "Import methods available.", "type": "array",
            "value": list(IMPORT_METHODS)}})


def _range(header: str, size: int) -> tuple[int, int]:
    """``[start, end)`` of a ``Range: bytes=a-b`` header (one range);
    ``RangeNotSatisfiable`` (416) when it does not fit."""
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise errors.RangeNotSatisfiable(f"Invalid range {header[:60]!r}: bytes=a-b.")
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise errors.RangeNotSatisfiable(f"Range {header[:60]!r} is outside the {size}"
                                         " bytes of the image.")
    return start, end


__all__ = ["GlanceAPI", "body_limit", "glance_image", "glance_member"]
