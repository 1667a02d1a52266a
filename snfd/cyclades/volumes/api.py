"""The ``/volume`` routes: Cinder's block storage API v3 (catalog types
``volumev3`` and ``block-storage``) on Synnefo's volume semantics
(``snfd.cyclades.volumes.service``).

URLs work with and without Cinder's project segment
(``/volume/v3/<project_id>/volumes`` and ``/volume/v3/volumes``); what a
caller sees is decided by its token alone.  Ids are UUIDs (volume types'
are their serials, as text).  Errors are Cinder's JSON
(``{"badRequest": {"code", "message"}}``).

- volumes: list, ``detail``, create (``size``, ``name``, ``description``,
  ``imageRef``, ``snapshot_id``, ``volume_type``, ``metadata``), show,
  update (``name``, ``description``, ``metadata``), delete, and the
  action ``os-extend``; ``source_volid`` (cloning a volume) is 400.
- types: list and show (``SNF:disk_template`` and ``SNF:detachable`` in
  ``extra_specs``).
- snapshots: list, ``detail``, create (``volume_id``, ``name``,
  ``description``, ``force``, ``metadata``), show, update, delete.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from klein import Klein

from snfd import errors
from snfd.cyclades.compute_http import body_of, object_of, scope_of
from snfd.cyclades.volumes.model import Snapshot, Volume, VolumeType
from snfd.cyclades.volumes.service import Volumes
from snfd.web.app import json_body, json_object, make_app
from snfd.web.auth import user_of

Handler = Callable[..., Awaitable[bytes]]
_VERSION = "3.0"
_TEXT_LIMIT = 255


def _time(when: datetime.datetime | None) -> str | None:
    return when.astimezone(datetime.UTC).replace(tzinfo=None).isoformat() if when else None


def _text(body: dict[str, Any], key: str, limit: int = _TEXT_LIMIT) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise errors.BadRequest(f"{key} must be a string of at most {limit} characters.")
    return value


def _metadata(body: dict[str, Any]) -> dict[str, str] | None:
    value = body.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 255 and len(v) <= 255
            for k, v in value.items()):
        raise errors.BadRequest("metadata must map strings (1-255 characters) to strings"
                                " (at most 255).")
    return dict(value)


def _size(value: Any, key: str = "size") -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise errors.BadRequest(f"{key} must be a positive whole number of GiB.")
    return value


class VolumeAPI:
    """The ``/volume`` Klein app (see the module docstring)."""

    def __init__(self, volumes: Volumes, base_url: str, max_body: int):
        self._volumes = volumes
        self._base = base_url.rstrip("/")
        self._max_body = max_body
        self.app: Klein = make_app()
        self._route("GET", "/", self.versions)
        self._route("GET", "/v3", self.versions)
        self._route("GET", "/v3/", self.versions)
        for prefix in ("/v3", "/v3/<project_id>"):
            for method, path, handler in (
                    ("GET", "/volumes", self.list_volumes),
                    ("GET", "/volumes/detail", self.detail_volumes),
                    ("POST", "/volumes", self.create_volume),
                    ("GET", "/volumes/<volume_id>", self.show_volume),
                    ("PUT", "/volumes/<volume_id>", self.update_volume),
                    ("DELETE", "/volumes/<volume_id>", self.delete_volume),
                    ("POST", "/volumes/<volume_id>/action", self.volume_action),
                    ("GET", "/types", self.list_types),
                    ("GET", "/types/<type_id>", self.show_type),
                    ("GET", "/snapshots", self.list_snapshots),
                    ("GET", "/snapshots/detail", self.detail_snapshots),
                    ("POST", "/snapshots", self.create_snapshot),
                    ("GET", "/snapshots/<snapshot_id>", self.show_snapshot),
                    ("PUT", "/snapshots/<snapshot_id>", self.update_snapshot),
                    ("DELETE", "/snapshots/<snapshot_id>", self.delete_snapshot)):
                self._route(method, prefix + path, handler)

    def resource(self) -> Any:
        return self.app.resource()

    def _route(self, method: str, path: str, handler: Handler) -> None:
        async def endpoint(request: Any, project_id: str | None = None, **kw: Any) -> bytes:
            request.setHeader(b"openstack-api-version", f"volume {_VERSION}".encode())
            return await handler(request, **kw)

        name = f"volume:{method}:{path}"
        endpoint.__name__ = name
        self.app.route(path, methods=[method], endpoint=name)(endpoint)

    # -- views --------------------------------------------------------------------

    def _links(self, kind: str, ident: str) -> list[dict[str, str]]:
        return [{"rel": "self", "href": f"{self._base}/v3/{kind}/{ident}"},
                {"rel": "bookmark", "href": f"{self._base}/{kind}/{ident}"}]

    def volume_view(self, v: Volume) -> dict[str, Any]:
        kind, _, ident = v.source.partition(":")
        attachments = []
        if v.server_id is not None and v.status in ("in-use", "detaching"):
            attachments.append({"id": v.id, "attachment_id": v.id, "volume_id": v.id,
                                "server_id": str(v.server_id), "host_name": None,
                                "device": v.device or None, "attached_at": _time(v.updated)})
        return {
            "id": v.id, "name": v.name or None, "description": v.description or None,
            "size": v.size, "status": v.status, "volume_type": v.volume_type.name,
            "availability_zone": "nova", "bootable": "true" if v.bootable else "false",
            "encrypted": False, "multiattach": False, "metadata": dict(v.metadata),
            "attachments": attachments, "links": self._links("volumes", v.id),
            "user_id": v.userid, "os-vol-tenant-attr:tenant_id": v.project,
            "snapshot_id": ident if kind == "snapshot" else None,
            "source_volid": ident if kind == "volume" else None,
            "volume_image_metadata": {"image_id": ident} if kind == "image" else None,
            "created_at": _time(v.created), "updated_at": _time(v.updated),
            "replication_status": None, "consistencygroup_id": None,
            "migration_status": None}

    def type_view(self, t: VolumeType) -> dict[str, Any]:
        return {"id": str(t.id), "name": t.name, "description": t.description or None,
                "is_public": True, "os-volume-type-access:is_public": True,
                "extra_specs": {"SNF:disk_template": t.disk_template,
                                "SNF:detachable": "true" if t.detachable else "false"}}

    def snapshot_view(self, s: Snapshot) -> dict[str, Any]:
        return {"id": s.id, "name": s.name or None, "description": s.description or None,
                "volume_id": s.volume_id, "size": s.size, "status": s.status,
                "metadata": dict(s.metadata), "created_at": _time(s.created),
                "updated_at": _time(s.updated), "progress": "100%" if s.status == "available"
                else "0%", "os-extended-snapshot-attributes:project_id": s.project,
                "user_id": s.userid, "SNF:image_id": s.image_id or None}

    # -- versions -----------------------------------------------------------------

    async def versions(self, request: Any) -> bytes:
        return json_body(request, {"versions": [{
            "id": "v3.0", "status": "CURRENT", "version": _VERSION,
            "min_version": _VERSION, "updated": "2026-12-01T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self._base}/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.volume+json;version=3"}]}]})

    # -- volumes ------------------------------------------------------------------

    @staticmethod
    def _who(request: Any) -> tuple[str, str, bool]:
        p = user_of(request)
        assert p.user is not None
        return p.user, scope_of(request) or p.user, bool(p.is_admin)

    async def list_volumes(self, request: Any) -> bytes:
        user, _, _ = self._who(request)
        return json_body(request, {"volumes": [
            {"id": v.id, "name": v.name or None, "links": self._links("volumes", v.id)}
            for v in await self._volumes.volumes(user)]})

    async def detail_volumes(self, request: Any) -> bytes:
        user, _, _ = self._who(request)
        return json_body(request, {"volumes": [self.volume_view(v)
                                               for v in await self._volumes.volumes(user)]})

    async def create_volume(self, request: Any) -> bytes:
        user, project, _ = self._who(request)
        body = object_of(request, "volume", self._max_body)
        if body.get("source_volid"):
            raise errors.BadRequest("Cloning a volume is not supported: snapshot it and"
                                    " create the volume from the snapshot.")
        size = body.get("size")
        image = body.get("imageRef") or body.get("image_id")
        snapshot = body.get("snapshot_id")
        if size is None and not (image or snapshot):
            raise errors.BadRequest("size is required for a volume without a source.")
        for key, value in (("imageRef", image), ("snapshot_id", snapshot),
                           ("volume_type", body.get("volume_type"))):
            if value is not None and not isinstance(value, str):
                raise errors.BadRequest(f"{key} must be a string.")
        volume = await self._volumes.create(
            user, project, None if size is None else _size(size),
            name=_text(body, "name") or "", description=_text(body, "description") or "",
            type_name=body.get("volume_type") or None, image_id=image or None,
            snapshot_id=snapshot or None, metadata=_metadata(body))
        return json_body(request, {"volume": self.volume_view(volume)}, 202)

    async def show_volume(self, request: Any, volume_id: str) -> bytes:
        user, _, admin = self._who(request)
        volume = await self._volumes.volume(user, volume_id, admin)
        return json_body(request, {"volume": self.volume_view(volume)})

    async def update_volume(self, request: Any, volume_id: str) -> bytes:
        user, _, _ = self._who(request)
        body = object_of(request, "volume", self._max_body)
        volume = await self._volumes.update(
            user, volume_id, name=_text(body, "name"),
            description=_text(body, "description"), metadata=_metadata(body))
        return json_body(request, {"volume": self.volume_view(volume)})

    async def delete_volume(self, request: Any, volume_id: str) -> bytes:
        user, _, admin = self._who(request)
        await self._volumes.delete(user, volume_id, admin)
        request.setResponseCode(202)
        return b""

    async def volume_action(self, request: Any, volume_id: str) -> bytes:
        user, _, _ = self._who(request)
        body = json_object(body_of(request, self._max_body))
        extend = body.get("os-extend")
        if len(body) != 1 or not isinstance(extend, dict):
            raise errors.BadRequest("Supported volume actions: os-extend.")
        await self._volumes.extend(user, volume_id, _size(extend.get("new_size"), "new_size"))
        request.setResponseCode(202)
        return b""

    # -- types --------------------------------------------------------------------

    async def list_types(self, request: Any) -> bytes:
        self._who(request)
        return json_body(request, {"volume_types": [self.type_view(t)
                                                    for t in await self._volumes.types()]})

    async def show_type(self, request: Any, type_id: str) -> bytes:
        self._who(request)
        vtype = await self._volumes.volume_type(type_id)
        return json_body(request, {"volume_type": self.type_view(vtype)})

    # -- snapshots ----------------------------------------------------------------

    async def list_snapshots(self, request: Any) -> bytes:
        user, _, _ = self._who(request)
        return json_body(request, {"snapshots": [
            {"id": s.id, "name": s.name or None, "volume_id": s.volume_id,
             "status": s.status, "size": s.size}
            for s in await self._volumes.snapshots(user)]})

    async def detail_snapshots(self, request: Any) -> bytes:
        user, _, _ = self._who(request)
        return json_body(request, {"snapshots": [self.snapshot_view(s) for s in
                                                 await self._volumes.snapshots(user)]})

    async def create_snapshot(self, request: Any) -> bytes:
        user, _, _ = self._who(request)
        body = object_of(request, "snapshot", self._max_body)
        volume_id = body.get("volume_id")
        if not isinstance(volume_id, str) or not volume_id:
            raise errors.BadRequest("volume_id is required.")
        force = body.get("force", False)
        if isinstance(force, str):
            force = force.lower() in ("true", "1", "yes")
        if not isinstance(force, bool):
            raise errors.BadRequest("force must be true or false.")
        snap = await self._volumes.create_snapshot(
            user, volume_id, name=_text(body, "name") or "",
            description=_text(body, "description") or "", force=force,
            metadata=_metadata(body))
        return json_body(request, {"snapshot": self.snapshot_view(snap)}, 202)

    async def show_snapshot(self, request: Any, snapshot_id: str) -> bytes:
        user, _, _ = self._who(request)
        snap = await self._volumes.snapshot(user, snapshot_id)
        return json_body(request, {"snapshot": self.snapshot_view(snap)})

    async def update_snapshot(self, request: Any, snapshot_id: str) -> bytes:
        user, _, _ = self._who(request)
        body = object_of(request, "snapshot", self._max_body)
        snap = await self._volumes.update_snapshot(
            user, snapshot_id, name=_text(body, "name"),
            description=_text(body, "description"), metadata=_metadata(body))
        return json_body(request, {"snapshot": self.snapshot_view(snap)})

    async def delete_snapshot(self, request: Any, snapshot_id: str) -> bytes:
        user, _, _ = self._who(request)
        await self._volumes.delete_snapshot(user, snapshot_id)
        request.setResponseCode(202)
        return b""


__all__ = ["VolumeAPI"]
