"""A server's disk as an image: Nova's ``createImage`` and ``createBackup``.

The server's boot disk must be a thin (Archipelago) volume.  Its map is
frozen as a snapshot at once (copy-on-write: nothing is copied, writes of
the running server go on), and a Glance image is made at once in the
owner's ``snapshots`` container, ``saving``, with the properties Nova
gives a snapshot (``instance_uuid``, ``image_type`` = ``snapshot`` or
``backup``, ``base_image_ref``, ``user_id``, the formats and
``min_ram`` of the image the server was built from, ``min_disk`` = the
flavor's disk) and the caller's metadata (which wins, as in Nova).  In the background the frozen
map's objects become content-addressed blocks of the object store, the
image's file takes them as its content (charged to the owner's
``pithos.diskspace``), the image becomes ``active`` and the frozen map
goes.  A failure deletes the image (as Nova does) and logs why; an image
deleted while it is being saved stays deleted.

One image of a server is saved at a time on a node (``Conflict`` for a
second, as Nova's ``image_snapshot`` task state refuses it).  A server
booted from a volume is captured the same way: its image holds the data
(Nova would make a Cinder snapshot and a data-less image pointing at it).

``createBackup`` also rotates: after the new backup is saved, the
server's older backups of the same ``backup_type`` beyond ``rotation``
(oldest first) are deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from snfd import errors
from snfd.cyclades import images as image_module
from snfd.cyclades.glance import GlanceImages
from snfd.cyclades.images import DOMAIN, ID_KEY, PREFIX, SNAPSHOTS_CONTAINER, Image
from snfd.cyclades.model import Server
from snfd.cyclades.volumes.model import SNAPSHOT_MAP_PREFIX, Volume

log = Logger()

#: Nova's limits on an image's name and on each metadata key and value.
MAX_TEXT = 255
#: The statuses a server may be captured from (Synnefo's operstates).
CAPTURABLE = ("STARTED", "STOPPED")


def _text(value: Any, what: str, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or (not value and not empty):
        raise errors.BadRequest(f"Invalid {what}: a string of 1 to {MAX_TEXT} characters.")
    return value


def check_metadata(metadata: Any) -> dict[str, str]:
    """Nova's rule for an image's metadata: keys of 1 to 255 characters,
    string values up to 255; ``BadRequest`` otherwise."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise errors.BadRequest("Invalid metadata: an object of strings.")
    return {_text(k, "metadata key"): _text(v, f"value of metadata {k!r}", empty=True)
            for k, v in metadata.items()}


class ServerImages:
    """``createImage`` and ``createBackup`` (see the module docstring).

    @param servers: ``snfd.cyclades.servers.Servers``.
    @param volumes: ``snfd.cyclades.volumes.service.Volumes`` (with the
        node's ``IVolumes`` as ``thin``; without it nothing is captured).
    @param registry: the ``ImageRegistry``.
    """

    def __init__(self, servers: Any, volumes: Any, registry: Any):
        self.servers = servers
        self.volumes = volumes
        self.registry = registry
        self.glance = GlanceImages(registry, container=SNAPSHOTS_CONTAINER)
        self._saving: dict[int, defer.Deferred[None]] = {}
        #: servers being captured (from the check to the end of the save)
        self._busy: set[int] = set()

    async def create(self, user: str, server_id: int, name: Any, metadata: Any = None,
                     project: str | None = None, backup: tuple[str, int] | None = None,
                     ) -> Image:
        """Capture the server's boot disk as a new image (``saving``; see
        the module docstring); ``backup``: ``(backup_type, rotation)``."""
        name = _text(name, "image name")
        meta = check_metadata(metadata)
        server: Server = await self.servers.get(user, server_id)
        if server.deleted:
            raise errors.NotFound(f"Server {server_id} not found.")
        if server.id in self._busy:
            raise errors.Conflict(f"Cannot 'createImage' while server {server_id} is in"
                                  " task_state image_snapshot: an image of it is being"
                                  " saved.")
        if server.task or server.operstate not in CAPTURABLE:
            raise errors.Conflict(f"Cannot 'createImage' of server {server_id} while it is"
                                  f" {server.task or server.operstate}.")
        self._busy.add(server.id)
        try:
            image, frozen = await self._start(server, name, meta, project, backup)
        except BaseException:
            self._busy.discard(server.id)
            raise
        d = defer.ensureDeferred(self._save(server, image, frozen, backup))
        self._saving[server.id] = d

        def saved(result: Any) -> Any:
            del self._saving[server.id]
            self._busy.discard(server.id)
            return result
        d.addBoth(saved)
        d.addErrback(lambda f: log.failure("saving image {i} failed", f, i=image.id))
        return image

    async def _start(self, server: Server, name: str, meta: dict[str, str],
                     project: str | None, backup: tuple[str, int] | None,
                     ) -> tuple[Image, str]:
        """Freeze the boot disk and make the image (``saving``): the image
        and the frozen map's name."""
        root = await self._boot_volume(server)
        base = await self._base_image(server, project)
        properties = {"instance_uuid": str(server.id), "user_id": server.userid,
                      "image_type": "snapshot", "base_image_ref": server.image_id or ""}
        if backup is not None:
            properties.update(image_type="backup", backup_type=backup[0])
        properties.update(meta)  # as Nova: the caller's metadata wins
        body: dict[str, Any] = {
            **properties, "name": name, "visibility": "private",
            "disk_format": base.disk_format if base is not None else "raw",
            "container_format": base.container_format if base is not None else "bare",
            "min_ram": base.min_ram if base is not None else 0,
            "min_disk": max(server.flavor.disk, base.min_disk if base is not None else 0)}
        frozen = f"{SNAPSHOT_MAP_PREFIX}image-{uuid.uuid4()}"
        try:
            await self.volumes.thin.snapshot(root.map_name, frozen)
        except (KeyError, ValueError, OSError) as e:
            raise errors.ServiceUnavailable(f"The disk of server {server.id} could not be"
                                            f" frozen: {e}") from None
        try:
            image: Image = await self.glance.create(server.userid, body)
            await self._status(image, "UNAVAILABLE")
        except BaseException:
            await self._drop(frozen)
            raise
        return image, frozen

    async def drain(self) -> None:
        """Wait for the images being saved."""
        while self._saving:
            await defer.DeferredList(list(self._saving.values()))

    # -- helpers ------------------------------------------------------------------

    async def _boot_volume(self, server: Server) -> Volume:
        thin = self.volumes.thin if self.volumes is not None else None
        disks = [v for v in await self.volumes.server_volumes(server.id) if v.thin] \
            if thin is not None else []
        disks.sort(key=lambda v: (not v.bootable, v.device))
        if not disks or not disks[0].bootable:
            raise errors.BadRequest(f"Server {server.id}'s boot disk is not a thin volume"
                                    " (its flavor's disk template): only thin volumes can be"
                                    " captured as images.")
        return disks[0]

    async def _base_image(self, server: Server, project: str | None) -> Image | None:
        if not server.image_id:
            return None
        try:
            found: Image = await self.registry.get(server.userid, server.image_id,
                                                   project or server.project)
        except errors.NotFound:
            return None
        return found

    async def _status(self, image: Image, status: str) -> None:
        account, container, path = image_module.parse_location(image.location)
        await self.registry.objects.set_attributes(account, account, container, path, DOMAIN,
                                                   {PREFIX + "status": status})

    async def _drop(self, frozen: str) -> None:
        try:
            await self.volumes.thin.remove(frozen)
        except KeyError:
            pass
        except Exception:
            log.failure("the frozen map {m} could not be removed", m=frozen)

    async def _save(self, server: Server, image: Image, frozen: str,
                    backup: tuple[str, int] | None) -> None:
        owner = server.userid
        account, container, path = image_module.parse_location(image.location)
        objects = self.registry.objects
        try:
            size, hashes = await self.volumes.thin.hashmap(frozen)
            await objects.create_from_hashmap(owner, account, container, path, size, hashes)
            saved = await objects.object_at(owner, account, container, path, DOMAIN)
            if saved.attributes.get(ID_KEY) != image.id:
                # Deleted while being saved: the new file is no image.
                await objects.delete(owner, account, container, path)
                return
            await self._status(image, "AVAILABLE")
        except errors.NotFound:
            return
        except Exception as e:
            log.failure("saving image {i} of server {s} failed", i=image.id, s=server.id)
            try:
                await objects.delete(owner, account, container, path)
            except errors.NotFound:
                pass
            if not isinstance(e, errors.Fault | OSError | LookupError | ValueError):
                raise
            return
        finally:
            await self._drop(frozen)
        if backup is not None:
            await self._rotate(server, backup)

    async def _rotate(self, server: Server, backup: tuple[str, int]) -> None:
        """Delete the server's oldest backups of ``backup``'s type beyond
        its rotation."""
        kind, rotation = backup
        found = [i for i in await self.registry.list(server.userid)
                 if i.owner == server.userid and _is_backup(i, server.id, kind)]
        found.sort(key=lambda i: i.created_at, reverse=True)
        for old in found[rotation:]:
            try:
                await self.glance.delete(server.userid, old.id)
            except errors.Fault as e:
                log.warn("backup {i} of server {s} was not rotated away: {e}", i=old.id,
                         s=server.id, e=e.message)


def _is_backup(image: Image, server_id: int, kind: str) -> bool:
    p: Mapping[str, str] = image.properties or {}
    return (p.get("image_type") == "backup" and p.get("backup_type") == kind
            and p.get("instance_uuid") == str(server_id))


__all__ = ["ServerImages", "check_metadata"]
