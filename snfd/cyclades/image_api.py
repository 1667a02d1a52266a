"""The image APIs: Plankton (``/v1.0``, Synnefo's Glance v1-like API,
reference/synnefo-apis.md 3.2), Glance v2 (``/v2``, ``glance_api``) for
OpenStack clients, and version discovery (``/``).  Mounted at the segment
``image`` behind ``snfd.web.auth.TokenAuth``.

Plankton::

    GET    /v1.0/images[/]            list: id, name, status, formats, size
    GET    /v1.0/images/detail        list with every field
               (?name, container_format, disk_format, status, size_min,
                size_max, sort_key, sort_dir; default created_at desc)
    POST   /v1.0/images[/]            register a file: 200, X-Image-Meta-* headers
    HEAD   /v1.0/images/<id>          X-Image-Meta-* headers
    GET    /v1.0/images/<id>          the file's bytes (X-Image-Meta-* headers)
    PUT    /v1.0/images/<id>          update: 200, X-Image-Meta-* headers
    DELETE /v1.0/images/<id>          unregister (the file stays): 204
    GET    /v1.0/images/<id>/members  {"members": [{"member_id", "can_share"}]}
                                      (all for the owner; a member sees itself)
    PUT    /v1.0/images/<id>/members  {"memberships": [{"member_id"}, ...]}: 204
    PUT    /v1.0/images/<id>/members/<member>   204
    DELETE /v1.0/images/<id>/members/<member>   204
    GET    /v1.0/shared-images/<member>         {"shared_images": [{"image_id", "can_share"}]}

Requests carry image metadata as ``X-Image-Meta-<field>`` and
``X-Image-Meta-Property-<key>`` headers: field names are lowercased with
punctuation turned into ``_``, property keys too; the name and the
properties (keys and values) are URL-unquoted.  Replies quote the name,
the description and the properties the same way.  Dates are
``YYYY-MM-DD HH:MM:SS`` (UTC); the header status of an UNAVAILABLE image
is SAVING.

Glance v2 (``/v2``): the whole API, ``snfd.cyclades.glance_api``.

Plankton's ``GET /v1.0/images/<id>`` sends the image's bytes (200, or 206
for a ``Range``), as its ``HEAD`` sends the headers.

``GET /`` (and ``/v2/``) answers 300 with the versions document
keystoneauth's discovery reads; it needs no token.  Every other route
needs a user token.
"""

from __future__ import annotations

import datetime
import string
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, unquote

from twisted.web.resource import IResource

from snfd import errors
from snfd.cyclades.glance import GlanceImages
from snfd.cyclades.glance_api import GlanceAPI, body_limit, glance_image
from snfd.cyclades.images import Image, ImageRegistry
from snfd.pithos.streams import send_range
from snfd.web.app import json_body, json_object, make_app, read_json
from snfd.web.auth import user_of

PLANKTON = "/v1.0"
GLANCE = "/v2"

# Plankton's header fields (reference 3.2).
LIST_FIELDS = ("status", "name", "disk_format", "container_format", "size", "id")
DETAIL_FIELDS = ("name", "disk_format", "container_format", "size", "checksum", "location",
                 "created_at", "updated_at", "deleted_at", "status", "is_public", "owner",
                 "properties", "id", "is_snapshot", "description")
PLANKTON_FIELDS = frozenset((*DETAIL_FIELDS, "store"))
ADD_FIELDS = frozenset({"name", "id", "store", "disk_format", "container_format", "size",
                        "checksum", "is_public", "owner", "properties", "location"})
UPDATE_FIELDS = frozenset({"name", "disk_format", "container_format", "is_public", "owner",
                           "properties", "status"})
LIST_FILTERS = ("name", "container_format", "disk_format", "status", "size_min", "size_max")
HEADER_STATUS = {"AVAILABLE": "AVAILABLE", "UNAVAILABLE": "SAVING", "ERROR": "ERROR",
                 "DELETED": "DELETED", "QUEUED": "QUEUED", "UPLOADING": "SAVING",
                 "IMPORTING": "SAVING", "DEACTIVATED": "DEACTIVATED"}

_META = "x-image-meta-"
_PROPERTY = "x-image-meta-property-"
_PUNCTUATION = frozenset(string.punctuation)

COMPUTE_STATUS = {"AVAILABLE": "ACTIVE", "UNAVAILABLE": "SAVING", "ERROR": "ERROR",
                  "DELETED": "DELETED", "QUEUED": "SAVING", "UPLOADING": "SAVING",
                  "IMPORTING": "SAVING"}

Handler = Callable[..., Awaitable[bytes]]


# -- renderings -----------------------------------------------------------------

def _plankton_date(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso_offset(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).replace(microsecond=0).isoformat()


def plankton_image(image: Image, detail: bool = True) -> dict[str, Any]:
    """An image as a Plankton listing shows it (``detail``: every field)."""
    full: dict[str, Any] = {
        "id": image.id,
        "name": image.name,
        "status": image.status,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "size": image.size,
    }
    if not detail:
        return {k: full[k] for k in LIST_FIELDS}
    full.update({
        "checksum": image.checksum,
        "location": image.location,
        "created_at": _plankton_date(image.created_at),
        "updated_at": _plankton_date(image.updated_at),
        "deleted_at": "",
        "is_public": image.is_public,
        "owner": image.owner,
        "properties": dict(image.properties),
        "is_snapshot": image.is_snapshot,
    })
    if image.description:
        full["description"] = image.description
    return full


def _quoted(value: str, safe: str = "/") -> str:
    return quote(value.encode("utf-8"), safe=safe)


def plankton_headers(image: Image) -> list[tuple[str, str]]:
    """The ``X-Image-Meta-*`` reply headers of an image."""
    values: dict[str, str] = {
        "name": _quoted(image.name),
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "size": str(image.size),
        "checksum": image.checksum,
        "location": image.location,
        "created_at": _plankton_date(image.created_at),
        "updated_at": _plankton_date(image.updated_at),
        "deleted_at": "",
        "status": HEADER_STATUS.get(image.status, "UNKNOWN"),
        "is_public": str(image.is_public),
        "owner": image.owner,
        "id": image.id,
        "is_snapshot": str(image.is_snapshot),
        "description": _quoted(image.description),
    }
    out = []
    for field in DETAIL_FIELDS:
        if field == "properties":
            for key, value in sorted(image.properties.items()):
                out.append((_PROPERTY + _quoted(key.replace("_", "-"), safe=""),
                            _quoted(value)))
        else:
            out.append((_META + field.replace("_", "-"), values[field]))
    return out


def compute_image(image: Image, compute_url: str = "", plankton_url: str = "",
                  detail: bool = True) -> dict[str, Any]:
    """An image as the compute API's ``/images`` view shows it.

    ``compute_url``/``plankton_url`` are the bases of the compute API
    (``.../compute/v2.0``) and of Plankton (``.../image/v1.0``) for the
    ``links``; status AVAILABLE shows as ACTIVE (progress 100), the
    properties as ``metadata``, the owner as ``user_id`` and
    ``tenant_id``.  Without ``detail`` only id, name and links.
    """
    href = f"{compute_url.rstrip('/')}/images/{image.id}"
    links = [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]
    if plankton_url:
        links.append({"rel": "alternate",
                      "href": f"{plankton_url.rstrip('/')}/images/{image.id}"})
    out: dict[str, Any] = {"id": image.id, "name": image.name, "links": links}
    if not detail:
        return out
    status = COMPUTE_STATUS.get(image.status, "UNKNOWN")
    out.update({
        "status": status,
        "progress": 100 if status == "ACTIVE" else 0,
        "created": _iso_offset(image.created_at),
        "updated": _iso_offset(image.updated_at),
        "user_id": image.owner,
        "tenant_id": image.owner,
        "public": image.is_public,
        "metadata": dict(image.properties),
        "is_snapshot": image.is_snapshot,
    })
    return out


# -- request parsing --------------------------------------------------------------------

def _normal(key: str) -> str:
    return "".join("_" if c in _PUNCTUATION else c.lower() for c in key)


def _unquoted(value: str, what: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise errors.BadRequest(f"{what} is not valid UTF-8 once unquoted.") from None


def image_params(request: Any) -> dict[str, Any]:
    """The image metadata of a request's ``X-Image-Meta-*`` headers: the
    Plankton fields by name (``is_public`` a bool) and ``properties``
    (always present).  Other ``X-Image-Meta-*`` fields are ignored."""
    params: dict[str, Any] = {}
    properties: dict[str, str] = {}
    for raw_name, values in request.requestHeaders.getAllRawHeaders():
        name = raw_name.decode("latin-1").lower()
        if not name.startswith(_META) or not values:
            continue
        try:
            value = values[-1].decode("utf-8").strip()
        except UnicodeDecodeError:
            raise errors.BadRequest(f"The header {name} is not UTF-8.") from None
        if name.startswith(_PROPERTY):
            key = _normal(_unquoted(name[len(_PROPERTY):], "A property name"))
            properties[key] = _unquoted(value, f"Property {key[:60]!r}")
            continue
        field = _normal(name[len(_META):])
        if field not in PLANKTON_FIELDS:
            continue
        if field == "name":
            params[field] = _unquoted(value, "The image name")
        elif field == "is_public":
            params[field] = value.lower() == "true"
        else:
            params[field] = value
    params["properties"] = properties
    return params


def _args(request: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, values in (request.args or {}).items():
        try:
            name = key.decode("utf-8")
            out[name] = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise errors.BadRequest("The query string is not valid UTF-8.") from None
    return out


def _one(args: dict[str, list[str]], name: str) -> str | None:
    values = args.get(name)
    return values[-1] if values else None


def _set_headers(request: Any, headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        if not value.isascii():
            value = _quoted(value)
        request.setHeader(name.encode("ascii"), value.encode("ascii"))


def _no_content(request: Any) -> bytes:
    request.setResponseCode(204)
    return b""


# -- the app -------------------------------------------------------------------------------

class ImageAPI:
    """The image APIs as one Klein app (``.app``; see the module docstring).

    @param registry: the ``ImageRegistry``.
    @param public_url: the site's public base URL for the version links
        (default: the URL the request came in on).
    """

    def __init__(self, registry: ImageRegistry, public_url: str | None = None):
        self.registry = registry
        self.public_url = public_url.rstrip("/") if public_url else None
        self.app = make_app()
        routes: list[tuple[tuple[str, ...], str, Handler]] = [
            (("GET",), "/", self.versions),
            (("GET",), f"{GLANCE}/", self.glance_versions),
            # Plankton.
            (("GET",), f"{PLANKTON}/images/", self.plankton_list),
            (("GET",), f"{PLANKTON}/images/detail", self.plankton_detail),
            (("POST",), f"{PLANKTON}/images/", self.plankton_register),
            (("GET", "HEAD"), f"{PLANKTON}/images/<image_id>", self.plankton_image),
            (("PUT",), f"{PLANKTON}/images/<image_id>", self.plankton_update),
            (("DELETE",), f"{PLANKTON}/images/<image_id>", self.plankton_unregister),
            (("GET",), f"{PLANKTON}/images/<image_id>/members", self.plankton_members),
            (("PUT",), f"{PLANKTON}/images/<image_id>/members", self.plankton_set_members),
            (("PUT",), f"{PLANKTON}/images/<image_id>/members/<member>",
             self.plankton_add_member),
            (("DELETE",), f"{PLANKTON}/images/<image_id>/members/<member>",
             self.plankton_remove_member),
            (("GET",), f"{PLANKTON}/shared-images/<member>", self.plankton_shared),
        ]
        for methods, path, handler in routes:
            self._route(methods, path, handler)
        self.glance = GlanceAPI(GlanceImages(registry), self._route)
        # The node's site asks the mounted resource how large a body it
        # takes (``snfd.web.site.Root.body_limit``): image data for
        # Glance's uploads, JSON for the rest.
        make_resource = self.app.resource

        def resource() -> Any:
            made = make_resource()
            made.body_limit = self.body_limit  # type: ignore[attr-defined]
            return made

        self.app.resource = resource  # type: ignore[method-assign]

    def body_limit(self, request: Any, method: bytes, uri: bytes) -> int | None:
        """Image data for Glance uploads and stages (``glance_api.body_limit``),
        else ``None`` (the mount's own limit)."""
        return body_limit(method, uri)

    def _route(self, methods: tuple[str, ...], path: str, handler: Handler) -> None:
        async def endpoint(request: Any, **kwargs: Any) -> bytes:
            return await handler(request, **kwargs)

        name = f"image:{','.join(methods)}:{path}"
        endpoint.__name__ = name
        self.app.route(path, methods=list(methods), endpoint=name,
                       strict_slashes=False)(endpoint)

    def resource(self) -> IResource:
        return self.app.resource()

    # -- versions ----------------------------------------------------------------

    def _base(self, request: Any, route_segments: int) -> str:
        """The URL the app is mounted at (``<site>/image``): the request's
        path before the ``route_segments`` last segments (Klein moved
        those of the route into ``prepath``)."""
        segments = list(request.prepath)
        while segments and segments[-1] == b"":
            segments.pop()
        mount = "/".join(s.decode("utf-8", "replace")
                         for s in segments[:len(segments) - route_segments])
        if self.public_url is not None:
            return f"{self.public_url}/{mount}".rstrip("/")
        host = request.getHeader(b"host")
        if host is None:
            host = request.getRequestHostname()
            port = request.getHost().port
            host = host + b":" + str(port).encode() if port not in (80, 443) else host
        scheme = "https" if request.isSecure() else "http"
        return f"{scheme}://{host.decode('latin-1')}/{mount}".rstrip("/")

    async def versions(self, request: Any) -> bytes:
        """300 with the API versions; no token needed."""
        return self._versions(request, self._base(request, 0))

    async def glance_versions(self, request: Any) -> bytes:
        """``/v2/`` answers the versions too; no token needed."""
        return self._versions(request, self._base(request, 1))

    def _versions(self, request: Any, base: str) -> bytes:
        return json_body(request, {"versions": [
            {"id": "v2.0", "status": "CURRENT",
             "links": [{"rel": "self", "href": f"{base}{GLANCE}/"}]},
            {"id": "v1.0", "status": "SUPPORTED",
             "links": [{"rel": "self", "href": f"{base}{PLANKTON}/"}]},
        ]}, code=300)

    # -- Plankton ----------------------------------------------------------------

    async def _plankton_listing(self, request: Any, detail: bool) -> bytes:
        user = user_of(request).user
        assert user is not None
        args = _args(request)
        filters = {k: v for k in LIST_FILTERS if (v := _one(args, k)) is not None}
        images = await self.registry.list(
            user, filters=filters, sort_key=_one(args, "sort_key") or "created_at",
            sort_dir=_one(args, "sort_dir") or "desc", project=user_of(request).project)
        return json_body(request, {"images": [plankton_image(i, detail) for i in images]})

    async def plankton_list(self, request: Any) -> bytes:
        return await self._plankton_listing(request, False)

    async def plankton_detail(self, request: Any) -> bytes:
        return await self._plankton_listing(request, True)

    async def plankton_register(self, request: Any) -> bytes:
        user = user_of(request).user
        assert user is not None
        params = image_params(request)
        if not set(params) <= ADD_FIELDS:
            raise errors.BadRequest("Invalid parameters: "
                                    + ", ".join(sorted(set(params) - ADD_FIELDS)) + ".")
        if "name" not in params:
            raise errors.BadRequest("Image 'name' parameter is required.")
        if not params["name"]:
            raise errors.BadRequest("Invalid image name.")
        location = params.pop("location", None)
        if location is None:
            raise errors.BadRequest("'location' parameter is required.")
        image = await self.registry.register(user, location, params)
        _set_headers(request, plankton_headers(image))
        return b""

    async def plankton_image(self, request: Any, image_id: str) -> bytes:
        user = user_of(request).user
        assert user is not None
        project = user_of(request).project
        image = await self.registry.get(user, image_id, project)
        if request.method == b"GET":
            # The file's bytes, as Glance's download sends them.
            data = await self.glance.images.data(user, image_id, user_of(request).is_admin,
                                                 project)
            _set_headers(request, plankton_headers(data.image))
            request.setHeader(b"content-type", b"application/octet-stream")
            if data.hashmap is None:
                return _no_content(request)
            request.setHeader(b"content-length", str(data.hashmap.size).encode())
            await send_range(request, data.blocks, data.hashmap.hashes, data.hashmap.size, 0,
                             data.hashmap.size, block_size=data.block_size)
            return b""
        _set_headers(request, plankton_headers(image))
        return b""

    async def plankton_update(self, request: Any, image_id: str) -> bytes:
        user = user_of(request).user
        assert user is not None
        params = image_params(request)
        if not set(params) <= UPDATE_FIELDS:
            raise errors.BadRequest("Invalid metadata: "
                                    + ", ".join(sorted(set(params) - UPDATE_FIELDS)) + ".")
        image = await self.registry.update(user, image_id, params)
        _set_headers(request, plankton_headers(image))
        return b""

    async def plankton_unregister(self, request: Any, image_id: str) -> bytes:
        user = user_of(request).user
        assert user is not None
        await self.registry.unregister(user, image_id)
        return _no_content(request)

    async def plankton_members(self, request: Any, image_id: str) -> bytes:
        user = user_of(request).user
        assert user is not None
        members = await self.registry.members(user, image_id)
        return json_body(request, {"members": [{"member_id": m, "can_share": False}
                                               for m in members]})

    async def plankton_set_members(self, request: Any, image_id: str) -> bytes:
        user = user_of(request).user
        assert user is not None
        body = json_object(read_json(request))
        memberships = body.get("memberships")
        if not isinstance(memberships, list):
            raise errors.BadRequest("Invalid 'memberships': expected a list.")
        members = []
        for entry in memberships:
            if not isinstance(entry, dict) or not isinstance(entry.get("member_id"), str):
                raise errors.BadRequest("Invalid 'memberships' entry: expected"
                                        ' {"member_id": "<uuid>"}.')
            members.append(entry["member_id"])
        await self.registry.set_members(user, image_id, members)
        return _no_content(request)

    async def plankton_add_member(self, request: Any, image_id: str, member: str) -> bytes:
        user = user_of(request).user
        assert user is not None
        await self.registry.add_member(user, image_id, member)
        return _no_content(request)

    async def plankton_remove_member(self, request: Any, image_id: str, member: str) -> bytes:
        user = user_of(request).user
        assert user is not None
        await self.registry.remove_member(user, image_id, member)
        return _no_content(request)

    async def plankton_shared(self, request: Any, member: str) -> bytes:
        user = user_of(request).user
        assert user is not None
        images = await self.registry.shared_with(user, member)
        return json_body(request, {"shared_images": [{"image_id": i.id, "can_share": False}
                                                     for i in images]})



__all__ = ["ImageAPI", "compute_image", "glance_image", "image_params", "plankton_headers",
           "plankton_image"]
