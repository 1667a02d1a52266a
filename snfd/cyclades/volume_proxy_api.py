"""Nova's volume proxies on the compute API, over the volume service
(``snfd.cyclades.volumes.service.Volumes``): ``os-volumes`` (list, detail,
show, create, delete) and ``os-snapshots`` (the same for snapshots), as
Nova serves them up to microversion 2.35 (``compute_api.removed_since``
answers 404 from 2.36).  Nova's shapes are camel-cased (``displayName``,
``volumeType``, ``createdAt``...) and answer 200 on create, 202 on
delete (tempest's ``api_schema/response/compute/v2_1`` volumes and
snapshots).

The volumes are the volume service's thin volumes: what ``/volume/v3``
shows, the same owner checks (another user's volume is 404), the same
quota (``cyclades.disk``).  Listings page by ``limit`` and ``offset`` as
Nova's proxy passes them to Cinder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.compute_http import empty, object_of, scope_of, window
from snfd.cyclades.compute_views import nova_time
from snfd.cyclades.volumes.model import Snapshot, Volume
from snfd.web.app import json_body
from snfd.web.auth import user_of

Handler = Callable[..., Awaitable[bytes]]
#: The longest name or description Nova's proxy takes.
MAX_TEXT = 255


def volume_view(v: Volume) -> dict[str, Any]:
    """Nova's ``volume``: its attachment (``[{}]`` when none, as Nova's
    proxy shows an unattached volume)."""
    kind, _, ident = v.source.partition(":")
    attachment: dict[str, Any] = {}
    if v.server_id is not None and v.status in ("in-use", "detaching"):
        attachment = {"id": v.id, "volumeId": v.id, "serverId": str(v.server_id)}
        if v.device:
            attachment["device"] = v.device
    return {"id": v.id, "status": v.status, "size": v.size,
            "displayName": v.name or None, "displayDescription": v.description or None,
            "availabilityZone": "nova", "createdAt": nova_time(v.created),
            "volumeType": v.volume_type.name,
            "snapshotId": ident if kind == "snapshot" else None,
            "metadata": dict(v.metadata), "attachments": [attachment]}


def snapshot_view(s: Snapshot) -> dict[str, Any]:
    """Nova's ``snapshot``."""
    return {"id": s.id, "volumeId": s.volume_id, "status": s.status, "size": s.size,
            "createdAt": nova_time(s.created), "displayName": s.name or None,
            "displayDescription": s.description or None}


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise errors.BadRequest(f"{key} must be text of at most {MAX_TEXT} characters.")
    return value


def _size(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise errors.BadRequest("size must be a positive number of GiB.")
    return value


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if not isinstance(value, bool):
        raise errors.BadRequest(f"{key} must be true or false.")
    return value


class VolumeProxyAPI:
    """The routes of Nova's volume proxies (see the module docstring).
    ``volumes`` gives the volume service, or None when the node serves no
    volumes (every route then answers 501)."""

    def __init__(self, volumes: Callable[[], Any], max_body: int):
        self._volumes = volumes
        self._max_body = max_body

    def routes(self) -> list[tuple[str, str, Handler]]:
        v, s = "/os-volumes", "/os-snapshots"
        return [
            ("GET", v, self.list_volumes), ("GET", v + "/detail", self.list_volumes),
            ("POST", v, self.create_volume), ("GET", v + "/<volume_id>", self.show_volume),
            ("DELETE", v + "/<volume_id>", self.delete_volume),
            ("GET", s, self.list_snapshots), ("GET", s + "/detail", self.list_snapshots),
            ("POST", s, self.create_snapshot),
            ("GET", s + "/<snapshot_id>", self.show_snapshot),
            ("DELETE", s + "/<snapshot_id>", self.delete_snapshot),
        ]

    @staticmethod
    def _who(request: Any) -> tuple[str, str, bool]:
        """The caller, the project it charges (the token's, else its base
        project) and whether it is an administrator."""
        p = user_of(request)
        assert p.user is not None
        return p.user, scope_of(request) or p.user, p.is_admin

    async def list_volumes(self, request: Any) -> bytes:
        user, _, _ = self._who(request)
        found = sorted(await self._volumes().volumes(user), key=lambda v: (v.created, v.id))
        return json_body(request, {"volumes": [volume_view(v)
                                               for v in window(request, found)]})

    async def show_volume(self, request: Any, volume_id: str) -> bytes:
        user, _, admin = self._who(request)
        volume = await self._volumes().volume(user, volume_id, admin)
        return json_body(request, {"volume": volume_view(volume)})

    async def create_volume(self, request: Any) -> bytes:
        """``{"volume": {"size", "display_name"?, "display_description"?,
        "volume_type"?, "metadata"?, "snapshot_id"?, "imageRef"?,
        "availability_zone"?}}``: a thin volume, 200 with it."""
        user, project, _ = self._who(request)
        body = object_of(request, "volume", self._max_body)
        if "size" not in body:
            raise errors.BadRequest("size is required.")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(x, str) for k, x in metadata.items()):
            raise errors.BadRequest("metadata must be an object of strings.")
        zone = body.get("availability_zone")
        if zone not in (None, "", "nova"):
            raise errors.BadRequest(f"Availability zone {str(zone)[:40]!r} is invalid: volumes"
                                    " are in zone nova.")
        refs = {}
        for key in ("snapshot_id", "imageRef", "volume_type"):
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                raise errors.BadRequest(f"{key} must be a string.")
            refs[key] = value or None
        volume = await self._volumes().create(
            user, project, _size(body["size"]), name=_text(body, "display_name"),
            description=_text(body, "display_description"), type_name=refs["volume_type"],
            image_id=refs["imageRef"], snapshot_id=refs["snapshot_id"], metadata=metadata)
        return json_body(request, {"volume": volume_view(volume)})

    async def delete_volume(self, request: Any, volume_id: str) -> bytes:
        user, _, admin = self._who(request)
        await self._volumes().delete(user, volume_id, admin)
        return empty(request, 202)

    async def list_snapshots(self, request: Any) -> bytes:
        user, _, _ = self._who(request)
        found = sorted(await self._volumes().snapshots(user), key=lambda s: (s.created, s.id))
        return json_body(request, {"snapshots": [snapshot_view(s)
                                                 for s in window(request, found)]})

    async def show_snapshot(self, request: Any, snapshot_id: str) -> bytes:
        user, _, _ = self._who(request)
        return json_body(request, {"snapshot": snapshot_view(
            await self._volumes().snapshot(user, snapshot_id))})

    async def create_snapshot(self, request: Any) -> bytes:
        """``{"snapshot": {"volume_id", "force"?, "display_name"?,
        "display_description"?}}``: 200 with the snapshot (``creating``
        until it is published as an image)."""
        user, _, _ = self._who(request)
        body = object_of(request, "snapshot", self._max_body)
        volume_id = body.get("volume_id")
        if not isinstance(volume_id, str) or not volume_id:
            raise errors.BadRequest("snapshot needs a volume_id.")
        snapshot = await self._volumes().create_snapshot(
            user, volume_id, name=_text(body, "display_name"),
            description=_text(body, "display_description"),
            force=_bool(body.get("force", False), "force"))
        return json_body(request, {"snapshot": snapshot_view(snapshot)})

    async def delete_snapshot(self, request: Any, snapshot_id: str) -> bytes:
        user, _, _ = self._who(request)
        await self._volumes().delete_snapshot(user, snapshot_id)
        return empty(request, 202)
