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
  update (``name``, ``description``, ``metadata``), delete (``cascade``),
  metadata routes, and the actions ``os-extend``, ``os-set_bootable`` and
  Synnefo's ``reassign`` (``{"project"}``: the volume and its quota move);
  ``source_volid`` (cloning a volume) is 400.
- types: list and show (``SNF:disk_template`` and ``SNF:detachable`` in
  ``extra_specs``).
- snapshots: list, ``detail``, create (``volume_id``, ``name``,
  ``description``, ``force``, ``metadata``), show, update, delete.
"""

from __future__ import annotations

import ast
import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from klein import Klein

from snfd import errors
from snfd.cyclades.compute_http import body_of, object_of, scope_of
from snfd.cyclades.volumes.model import GiB, Snapshot, Volume, VolumeType
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


def _mapping(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 255 and len(v) <= 255
            for k, v in value.items()):
        raise errors.BadRequest(f"{what} must map strings (1-255 characters) to strings"
                                " (at most 255).")
    return dict(value)


def _metadata(body: dict[str, Any]) -> dict[str, str] | None:
    value = body.get("metadata")
    return None if value is None else _mapping(value, "metadata")


_PAGING = ("limit", "marker", "sort", "sort_key", "sort_dir", "offset")
_SORT_ALIASES = {"display_name": "name", "display_description": "description"}
_FILTERS = ("name", "status", "availability_zone", "bootable", "volume_id", "volume_type")
_SORTABLE = ("id", "name", "status", "size", "created_at", "updated_at", "availability_zone",
             "volume_type", "bootable", "description", "volume_id")


def _sort_keys(args: dict[str, str]) -> list[tuple[str, str]]:
    """``sort=key[:dir],...`` or ``sort_key``/``sort_dir``; 400 for an
    unknown key or direction."""
    pairs: list[tuple[str, str]] = []
    if "sort" in args:
        if "sort_key" in args or "sort_dir" in args:
            raise errors.BadRequest("Give sort, or sort_key and sort_dir, not both.")
        for part in args["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        pairs.append((args.get("sort_key", "created_at"), args.get("sort_dir", "desc")))
    pairs = [(_SORT_ALIASES.get(key, key), direction) for key, direction in pairs]
    for key, direction in pairs:
        if key not in _SORTABLE:
            raise errors.BadRequest(f"Invalid sort key {key[:40]!r}.")
        if direction not in ("asc", "desc"):
            raise errors.BadRequest(f"Invalid sort direction {direction[:40]!r}.")
    return pairs


def _sorter(key: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    """Nulls first, then the values (numbers as numbers, the rest as text)."""
    def value(view: dict[str, Any]) -> tuple[bool, Any]:
        v = view.get(key)
        return (v is not None, v if isinstance(v, int) else str(v or ""))
    return value


def _metadata_filter(text: str) -> dict[str, str]:
    """``metadata=`` of a list query: a mapping, as JSON or as Python's
    repr of a dict (what clients send); 400 otherwise."""
    if len(text) > 4096:
        raise errors.BadRequest("The metadata filter is too long.")
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise errors.BadRequest("The metadata filter must be a mapping.") from None
    if not isinstance(value, dict):
        raise errors.BadRequest("The metadata filter must be a mapping.")
    return {str(k): str(v) for k, v in value.items()}


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
        self._route("GET", "/", self.list_versions)
        self._route("GET", "/v3", self.versions)
        self._route("GET", "/v3/", self.versions)
        for prefix in ("/v3", "/v3/<project_id>"):
            served: tuple[tuple[str, str, Handler], ...] = (
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
                    ("DELETE", "/snapshots/<snapshot_id>", self.delete_snapshot),
                    ("GET", "/limits", self.limits),
                    ("GET", "/os-availability-zone", self.availability_zones),
                    ("GET", "/extensions", self.extensions))
            for method, path, handler in served:
                self._route(method, prefix + path, handler)
            for kind in ("volumes", "snapshots"):
                m = f"{prefix}/{kind}/<item_id>/metadata"
                routes: tuple[tuple[str, str, Handler], ...] = (
                        ("GET", m, self._metadata_handler(kind, "show")),
                        ("POST", m, self._metadata_handler(kind, "merge")),
                        ("PUT", m, self._metadata_handler(kind, "replace")),
                        ("GET", m + "/<key>", self._metadata_handler(kind, "show_key")),
                        ("PUT", m + "/<key>", self._metadata_handler(kind, "set_key")),
                        ("DELETE", m + "/<key>", self._metadata_handler(kind, "delete_key")))
                for method, path, handler in routes:
                    self._route(method, path, handler)

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

    def volume_view(self, v: Volume, detail: bool = True) -> dict[str, Any]:
        """Cinder's volume; ``detail`` (show, list detail) adds the project
        and the image a volume was made from."""
        kind, _, ident = v.source.partition(":")
        attachments = []
        if v.server_id is not None and v.status in ("in-use", "detaching"):
            attachments.append({"id": v.id, "attachment_id": v.id, "volume_id": v.id,
                                "server_id": str(v.server_id), "host_name": None,
                                "device": v.device or None, "attached_at": _time(v.updated)})
        out: dict[str, Any] = {
            "id": v.id, "name": v.name or None, "description": v.description or None,
            "size": v.size, "status": v.status, "volume_type": v.volume_type.name,
            "availability_zone": "nova", "bootable": "true" if v.bootable else "false",
            "encrypted": False, "multiattach": False, "metadata": dict(v.metadata),
            "attachments": attachments, "links": self._links("volumes", v.id),
            "user_id": v.userid,
            "snapshot_id": ident if kind == "snapshot" else None,
            "source_volid": ident if kind == "volume" else None,
            "created_at": _time(v.created), "updated_at": _time(v.updated),
            "replication_status": None, "consistencygroup_id": None,
            "migration_status": None}
        if detail:
            out["os-vol-tenant-attr:tenant_id"] = v.project
            out["volume_image_metadata"] = {"image_id": ident} if kind == "image" else None
        return out

    def type_view(self, t: VolumeType) -> dict[str, Any]:
        return {"id": str(t.id), "name": t.name, "description": t.description or None,
                "is_public": True, "os-volume-type-access:is_public": True,
                "extra_specs": {"SNF:disk_template": t.disk_template,
                                "SNF:detachable": "true" if t.detachable else "false"}}

    def snapshot_view(self, s: Snapshot, detail: bool = True) -> dict[str, Any]:
        """Cinder's snapshot; ``detail`` adds its progress and project."""
        out: dict[str, Any] = {
            "id": s.id, "name": s.name or None, "description": s.description or None,
            "volume_id": s.volume_id, "size": s.size, "status": s.status,
            "metadata": dict(s.metadata), "created_at": _time(s.created),
            "updated_at": _time(s.updated)}
        if detail:
            out["os-extended-snapshot-attributes:progress"] = (
                "100%" if s.status == "available" else "0%")
            out["os-extended-snapshot-attributes:project_id"] = s.project
        return out

    # -- versions -----------------------------------------------------------------

    async def list_versions(self, request: Any) -> bytes:
        """``GET /volume/``: 300 Multiple Choices, as Cinder answers."""
        body = await self.versions(request)
        request.setResponseCode(300)
        return body

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
        return await self._list_volumes(request, False)

    async def detail_volumes(self, request: Any) -> bytes:
        return await self._list_volumes(request, True)

    async def _list_volumes(self, request: Any, detail: bool) -> bytes:
        user, _, _ = self._who(request)
        views = [self.volume_view(v) for v in await self._volumes.volumes(user)]
        shown, links = self._page(request, "volumes/detail" if detail else "volumes", views)
        if not detail:
            shown = [{"id": v["id"], "name": v["name"], "links": v["links"]} for v in shown]
        body: dict[str, Any] = {"volumes": shown}
        if links:
            body["volumes_links"] = links
        return json_body(request, body)

    def _page(self, request: Any, kind: str, views: list[dict[str, Any]]
              ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Cinder's list query: filters (any shown field, ``metadata`` as a
        mapping), ``sort`` (``key[:dir],...``) or ``sort_key``/``sort_dir``
        (default: newest first), ``marker`` and ``limit``; the page and its
        ``next`` link when more remain."""
        args = {k.decode(): v[-1].decode() for k, v in (request.args or {}).items()}
        limit = None
        if "limit" in args:
            if not args["limit"].isdigit():
                raise errors.BadRequest("limit must be a non-negative integer.")
            limit = int(args["limit"])
        keys = _sort_keys(args)
        for key, value in args.items():
            if key in _PAGING or key in ("all_tenants", "with_count"):
                continue
            if key == "metadata":
                wanted = _metadata_filter(value)
                views = [v for v in views
                         if all(v["metadata"].get(k) == w for k, w in wanted.items())]
            elif key in _FILTERS or (views and key in views[0]):
                views = [v for v in views if str(v.get(key)).lower() == value.lower()
                         or (v.get(key) is None and value == "")]
        for key, direction in reversed(keys):
            views.sort(key=_sorter(key), reverse=direction == "desc")
        marker = args.get("marker")
        if marker:
            at = next((i for i, v in enumerate(views) if v["id"] == marker), None)
            if at is None:
                raise errors.NotFound(f"Marker {marker[:40]} could not be found.")
            views = views[at + 1:]
        if "offset" in args:
            if not args["offset"].isdigit():
                raise errors.BadRequest("offset must be a non-negative integer.")
            views = views[int(args["offset"]):]
        links: list[dict[str, str]] = []
        if limit is not None:
            views = views[:limit]
            if views and len(views) == limit:
                # A full page: the next one starts after its last item (it
                # may be empty, as Cinder's).
                query = {k: v for k, v in args.items() if k not in ("marker", "offset")}
                query["marker"] = views[-1]["id"]
                links = [{"rel": "next",
                          "href": f"{self._base}/v3/{kind}?{urlencode(query)}"}]
        return views, links

    async def create_volume(self, request: Any) -> bytes:
        user, project, _ = self._who(request)
        body = object_of(request, "volume", self._max_body)
        if body.get("source_volid"):
            await self._volumes.volume(user, str(body["source_volid"]))
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
        return json_body(request, {"volume": self.volume_view(volume, False)}, 202)

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
        return json_body(request, {"volume": self.volume_view(volume, False)})

    async def delete_volume(self, request: Any, volume_id: str) -> bytes:
        user, _, admin = self._who(request)
        cascade = (request.args or {}).get(b"cascade", [b"false"])[-1].lower() \
            in (b"true", b"1", b"yes")
        await self._volumes.delete(user, volume_id, admin, cascade=cascade)
        request.setResponseCode(202)
        return b""

    async def volume_action(self, request: Any, volume_id: str) -> bytes:
        """``os-extend`` (202) and ``os-set_bootable`` (200)."""
        user, _, _ = self._who(request)
        await self._volumes.volume(user, volume_id)  # 404 first, as Cinder
        body = json_object(body_of(request, self._max_body))
        if len(body) != 1 or not isinstance(next(iter(body.values())), dict) \
                or next(iter(body)) not in ("os-extend", "os-set_bootable", "reassign"):
            raise errors.BadRequest("Supported volume actions: os-extend, os-set_bootable,"
                                    " reassign.")
        name, args = next(iter(body.items()))
        if name == "reassign":
            project = args.get("project")
            if not isinstance(project, str) or not project:
                raise errors.BadRequest("reassign needs the project to move the volume to.")
            await self._volumes.reassign(user, volume_id, project)
            request.setResponseCode(202)
            return b""
        if name == "os-extend":
            await self._volumes.extend(user, volume_id,
                                       _size(args.get("new_size"), "new_size"))
            request.setResponseCode(202)
            return b""
        bootable = args.get("bootable")
        if isinstance(bootable, str) and bootable.lower() in ("true", "false"):
            bootable = bootable.lower() == "true"
        if not isinstance(bootable, bool):
            raise errors.BadRequest("bootable must be true or false.")
        await self._volumes.set_bootable(user, volume_id, bootable)
        return b""

    # -- metadata ---------------------------------------------------------------

    def _metadata_handler(self, kind: str, op: str) -> Handler:
        async def handler(request: Any, item_id: str, key: str | None = None) -> bytes:
            user, _, _ = self._who(request)
            if kind == "volumes":
                current = dict((await self._volumes.volume(user, item_id)).metadata)
            else:
                current = dict((await self._volumes.snapshot(user, item_id)).metadata)
            if op == "show":
                return json_body(request, {"metadata": current})
            if op == "show_key":
                assert key is not None
                if key not in current:
                    raise errors.NotFound(f"Metadata item {key[:40]} could not be found.")
                return json_body(request, {"meta": {key: current[key]}})
            if op == "delete_key":
                assert key is not None
                if key not in current:
                    raise errors.NotFound(f"Metadata item {key[:40]} could not be found.")
                del current[key]
                await self._set_metadata(kind, user, item_id, current)
                return b""
            if op == "set_key":
                assert key is not None
                meta = _mapping(object_of(request, "meta", self._max_body), "meta")
                if list(meta) != [key]:
                    raise errors.BadRequest("The meta object must hold exactly the key of"
                                            " the URL.")
                current.update(meta)
                await self._set_metadata(kind, user, item_id, current)
                return json_body(request, {"meta": meta})
            body = json_object(body_of(request, self._max_body))
            given = _metadata(body)
            if given is None:
                raise errors.BadRequest("The request needs a metadata object.")
            current = given if op == "replace" else {**current, **given}
            await self._set_metadata(kind, user, item_id, current)
            return json_body(request, {"metadata": current})
        return handler

    async def _set_metadata(self, kind: str, user: str, item_id: str,
                            metadata: dict[str, str]) -> None:
        if kind == "volumes":
            await self._volumes.update(user, item_id, metadata=metadata)
        else:
            await self._volumes.update_snapshot(user, item_id, metadata=metadata)

    # -- the rest -----------------------------------------------------------------

    async def limits(self, request: Any) -> bytes:
        """Absolute limits: ``cyclades.disk`` in GiB (the token's project,
        else the base project); volumes and snapshots are not counted
        (-1); no backups (0)."""
        user, project, _ = self._who(request)
        limit, used = await self._volumes.disk_quota(user, project)
        volumes = await self._volumes.volumes(user)
        snapshots = await self._volumes.snapshots(user)
        return json_body(request, {"limits": {"rate": [], "absolute": {
            "maxTotalVolumeGigabytes": limit // GiB, "totalGigabytesUsed": used // GiB,
            "maxTotalVolumes": -1, "totalVolumesUsed": len(volumes),
            "maxTotalSnapshots": -1, "totalSnapshotsUsed": len(snapshots),
            "maxTotalBackups": 0, "totalBackupsUsed": 0,
            "maxTotalBackupGigabytes": 0, "totalBackupGigabytesUsed": 0}}})

    async def availability_zones(self, request: Any) -> bytes:
        self._who(request)
        return json_body(request, {"availabilityZoneInfo": [
            {"zoneName": "nova", "zoneState": {"available": True}}]})

    async def extensions(self, request: Any) -> bytes:
        self._who(request)
        return json_body(request, {"extensions": []})

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
        return await self._list_snapshots(request, False)

    async def detail_snapshots(self, request: Any) -> bytes:
        return await self._list_snapshots(request, True)

    async def _list_snapshots(self, request: Any, detail: bool) -> bytes:
        user, _, _ = self._who(request)
        views = [self.snapshot_view(s) for s in await self._volumes.snapshots(user)]
        shown, links = self._page(request, "snapshots/detail" if detail else "snapshots",
                                  views)
        if not detail:
            shown = [{k: v for k, v in view.items() if not k.startswith("os-extended")}
                     for view in shown]
        body: dict[str, Any] = {"snapshots": shown}
        if links:
            body["snapshots_links"] = links
        return json_body(request, body)

    async def create_snapshot(self, request: Any) -> bytes:
        user, _, _ = self._who(request)
        body = object_of(request, "snapshot", self._max_body)
        volume_id = body.get("volume_id")
        if not isinstance(volume_id, str) or not volume_id:
            # Cinder looks the (absent) volume up: 404.
            raise errors.NotFound("The snapshot's volume_id names no volume.")
        force = body.get("force", False)
        if isinstance(force, str):
            force = force.lower() in ("true", "1", "yes")
        if not isinstance(force, bool):
            raise errors.BadRequest("force must be true or false.")
        snap = await self._volumes.create_snapshot(
            user, volume_id, name=_text(body, "name") or "",
            description=_text(body, "description") or "", force=force,
            metadata=_metadata(body))
        return json_body(request, {"snapshot": self.snapshot_view(snap, False)}, 202)

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
        return json_body(request, {"snapshot": self.snapshot_view(snap, False)})

    async def delete_snapshot(self, request: Any, snapshot_id: str) -> bytes:
        user, _, _ = self._who(request)
        await self._volumes.delete_snapshot(user, snapshot_id)
        request.setResponseCode(202)
        return b""


__all__ = ["VolumeAPI"]
