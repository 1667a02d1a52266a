"""What volume requests do (``Volumes``): Synnefo's volume semantics under
Cinder's API.

- A volume of a thin type (``ext_archipelago``) is a map of the volume
  service (``IVolumes``) named ``snf-vol-<id>``: made at once, with no data
  copied, blank or cloned from an image's hashmap or from a snapshot's map;
  it may exist without a server and move between servers.  Its size is
  charged to ``cyclades.disk`` of its project while it exists.
- Attaching one adds a Ganeti disk named like its map to the server
  (instance modify; the ExtStorage provider ``archipelago`` adopts the
  map, and is told it is ``managed`` so that removing the disk leaves the
  map); detaching removes the disk.  The update path follows Ganeti's
  disks (``sync_disks_txn``): ``attaching`` becomes ``in-use`` when the
  disk is there, ``detaching`` becomes ``available`` when it is gone; a
  failed change puts the volume back.
- A snapshot freezes the volume's map (the volume keeps working; later
  writes copy up) as ``snf-snap-<id>``, then publishes its content as a
  file of the owner's ``snapshots`` container registered as an image
  (``creating`` until then): so a server or a volume can be made from it,
  and its bytes count against the owner's ``pithos.diskspace``.

Another user's volume or snapshot is 404; a state that does not allow the
request is 400, as Cinder answers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from snfd import errors
from snfd.cyclades import images as image_module
from snfd.cyclades import store as compute_store
from snfd.cyclades.allocator import rapi_target
from snfd.cyclades.model import GanetiBackend, Server
from snfd.cyclades.volumes import store
from snfd.cyclades.volumes.model import (
    DISK_PREFIX,
    THIN_TEMPLATES,
    GiB,
    Snapshot,
    Volume,
    VolumeType,
)
from snfd.ganeti.rapi import RapiError, RapiUnavailable
from snfd.quota import user_and_project
from snfd.quota.charged import Attempt, run_charged
from snfd.quota.serials import Charger, decide_txn

log = Logger(namespace="snfd.cyclades.volumes")

DISK = "cyclades.disk"
#: The Ganeti ExtStorage provider of thin volumes.
PROVIDER = "archipelago"
MAX_SIZE_GB = 16 * 1024
MAX_METADATA = 64


def _provisions(volume_or_user: Any, project: str, size_gb: int) -> list[Any]:
    return user_and_project(volume_or_user, project, DISK, size_gb * GiB)


class Volumes:
    """The volume effect path (see the module docstring).

    @param thin: the volume service (``IVolumes``), or None when no node
        plugin provides it (then there are no thin volumes).
    @param images: the ``ImageRegistry``.
    @param objects: the ``IObjectStore`` (snapshots are published there).
    """

    def __init__(self, db: Any, rapi_pool: Any, charger: Charger, thin: Any, images: Any,
                 objects: Any, rapi_timeout: float = 30.0):
        self._db = db
        self._rapi_pool = rapi_pool
        self._charger = charger
        self.thin = thin
        self.images = images
        self.objects = objects
        self.rapi_timeout = rapi_timeout
        self._publishing: set[defer.Deferred[None]] = set()

    # -- types --------------------------------------------------------------------

    async def types(self) -> list[VolumeType]:
        """The volume types: one per disk template of a flavor, and the thin
        one whenever the volume service runs."""
        def txn_(txn: Any) -> list[VolumeType]:
            txn.execute("SELECT DISTINCT disk_template FROM cyclades_flavors WHERE NOT deleted")
            templates = {r[0] for r in txn.fetchall()}
            if self.thin is not None:
                templates.update(THIN_TEMPLATES)
            store.ensure_types_txn(txn, templates)
            return store.types_txn(txn)
        types: list[VolumeType] = await self._db.run("cyclades.volume_types", txn_)
        return types

    async def volume_type(self, ident: str) -> VolumeType:
        for t in await self.types():
            if ident in (str(t.id), t.name):
                return t
        raise errors.NotFound(f"Volume type {ident} could not be found.")

    async def _default_type(self) -> VolumeType:
        for t in await self.types():
            if t.detachable:
                return t
        raise errors.BadRequest("No volume type allows volumes without a server here"
                                " (the volume service is not running).")

    # -- volumes ------------------------------------------------------------------

    async def volume(self, user: str, volume_id: str, admin: bool = False) -> Volume:
        found: Volume | None = None
        if _uuid(volume_id):
            found = await self._db.run("cyclades.volume", store.volume_txn, volume_id)
        if found is None or found.deleted or (found.userid != user and not admin):
            raise errors.NotFound(f"Volume {volume_id} could not be found.")
        return found

    async def volumes(self, user: str, admin: bool = False) -> list[Volume]:
        found: list[Volume] = await self._db.run(
            "cyclades.volumes", store.volumes_txn, userid=None if admin else user)
        return found

    async def server_volumes(self, server_id: int) -> list[Volume]:
        found: list[Volume] = await self._db.run(
            "cyclades.server_volumes", store.volumes_txn, server_id=server_id)
        return found

    async def create(self, user: str, project: str, size: int | None, *, name: str = "",
                     description: str = "", type_name: str | None = None,
                     image_id: str | None = None, snapshot_id: str | None = None,
                     metadata: Mapping[str, str] | None = None) -> Volume:
        """A new thin volume of ``size`` GiB (default: its source's size),
        blank, from an image or from a snapshot; charged to ``project``
        (413 over quota).  It is made at once (``available``), or
        ``error`` when the volume service failed."""
        if image_id and snapshot_id:
            raise errors.BadRequest("Give imageRef or snapshot_id, not both.")
        vtype = await (self.volume_type(type_name) if type_name else self._default_type())
        if not vtype.detachable or self.thin is None:
            raise errors.BadRequest(f"Volumes of type {vtype.name} are made only with a"
                                    " server (as its disk).")
        source = ""
        origin: Any = None
        minimum = 1
        if image_id:
            image = await self._image(user, image_id, project)
            status = str(getattr(image, "status", "AVAILABLE")).upper()
            if status != "AVAILABLE":
                raise errors.BadRequest(f"Image {image_id} is {status.lower()}: only an"
                                        " active image makes a volume.")
            account, container, path = image_module.parse_location(image.location)
            hashmap = await self.objects.hashmap(user, account, container, path, project)
            origin = ("hashmap", hashmap.hashes, hashmap.size)
            # As Cinder: at least the image's data and its min_disk.
            minimum = max(1, -(-hashmap.size // GiB), int(getattr(image, "min_disk", 0) or 0))
            source = f"image:{image.id}"
        elif snapshot_id:
            snap = await self.snapshot(user, snapshot_id)
            if snap.status != "available":
                raise errors.BadRequest(f"Snapshot {snapshot_id} is {snap.status}, not"
                                        " available.")
            origin = ("snapshot", snap.map_name)
            minimum = snap.size
            source = f"snapshot:{snap.id}"
        size = minimum if size is None else size
        if size < minimum:
            raise errors.BadRequest(f"The volume must be at least {minimum} GiB, the size of"
                                    " its source.")
        if not 0 < size <= MAX_SIZE_GB:
            raise errors.BadRequest(f"size must be from 1 to {MAX_SIZE_GB} GiB.")
        volume_id = str(uuid.uuid4())

        async def create(attempt: Attempt) -> Volume:
            def txn_(txn: Any) -> Volume:
                made = store.create_volume_txn(
                    txn, volume_id, user, project, size, vtype, name=name,
                    description=description, source=source, bootable=bool(origin),
                    metadata=dict(metadata or {}), status="creating")
                if attempt.serial is not None:
                    decide_txn(txn, attempt.component, attempt.serial, True)
                return made
            made: Volume = await self._db.run("cyclades.create_volume", txn_)
            return made

        volume = await run_charged(self._charger, create,
                                   _provisions(user, project, size),
                                   name=f"cyclades: volume {volume_id}")
        status = "available"
        try:
            if origin is None:
                await self.thin.create(volume.map_name, size * GiB)
            elif origin[0] == "hashmap":
                await self.thin.clone_hashmap(volume.map_name, origin[1], origin[2],
                                              size * GiB)
            else:
                await self.thin.clone(volume.map_name, origin[1], size * GiB)
        except (LookupError, ValueError, OSError) as e:
            log.warn("volume {id}: its map could not be made: {e}", id=volume_id, e=e)
            status = "error"
        changed: Volume | None = await self._db.run(
            "cyclades.volume_made", store.update_volume_txn, volume_id, status=status)
        assert changed is not None
        return changed

    async def update(self, user: str, volume_id: str, *, name: str | None = None,
                     description: str | None = None,
                     metadata: Mapping[str, str] | None = None) -> Volume:
        await self.volume(user, volume_id)
        fields: dict[str, Any] = {}
        if name is not None:
            fields["name"] = name
        if description is not None:
            fields["description"] = description
        if metadata is not None:
            if len(metadata) > MAX_METADATA:
                raise errors.BadRequest(f"At most {MAX_METADATA} metadata items.")
            fields["metadata"] = dict(metadata)
        changed: Volume | None = await self._db.run(
            "cyclades.update_volume", lambda txn: store.update_volume_txn(txn, volume_id,
                                                                          **fields))
        assert changed is not None
        return changed

    async def set_bootable(self, user: str, volume_id: str, bootable: bool) -> Volume:
        await self.volume(user, volume_id)
        changed: Volume | None = await self._db.run(
            "cyclades.volume_bootable", store.update_volume_txn, volume_id, bootable=bootable)
        assert changed is not None
        return changed

    async def disk_quota(self, user: str, project: str) -> tuple[int, int]:
        """``cyclades.disk`` of ``user`` in ``project``: (limit, usage) in
        bytes."""
        holdings = await self._charger.holder.quotas(
            holders=[f"user:{user}"], sources=[f"project:{project}"], resources=[DISK])
        for h in holdings:
            return int(h.limit), int(h.usage)
        return 0, 0

    async def delete(self, user: str, volume_id: str, admin: bool = False,
                     cascade: bool = False) -> None:
        """Delete an ``available`` or ``error`` volume (400 otherwise): its
        map goes, its size is released.  A volume with snapshots is 400
        unless ``cascade`` deletes them first (Cinder's rule)."""
        volume = await self.volume(user, volume_id, admin)
        if volume.status not in ("available", "error"):
            raise errors.BadRequest(f"Volume {volume_id} is {volume.status}: only an"
                                    " available or error volume can be deleted.")
        snapshots: list[Snapshot] = await self._db.run(
            "cyclades.volume_snapshots", lambda txn: store.snapshots_txn(
                txn, volume_id=volume_id))
        if snapshots and not cascade:
            raise errors.BadRequest(f"Volume {volume_id} has snapshots: delete them, or"
                                    " delete the volume with cascade.")
        for snap in snapshots:
            if snap.status == "creating":
                raise errors.BadRequest(f"Snapshot {snap.id} of volume {volume_id} is still"
                                        " being made.")
        for snap in snapshots:
            await self.delete_snapshot(snap.userid, snap.id)

        async def delete(attempt: Attempt) -> None:
            def txn_(txn: Any) -> None:
                locked = store.volume_txn(txn, volume_id, for_update=True)
                if locked is None or locked.deleted:
                    raise errors.NotFound(f"Volume {volume_id} could not be found.")
                if locked.status not in ("available", "error"):
                    raise errors.BadRequest(f"Volume {volume_id} is {locked.status}.")
                store.update_volume_txn(txn, volume_id, status="deleting")
                if attempt.serial is not None:
                    decide_txn(txn, attempt.component, attempt.serial, True)
            await self._db.run("cyclades.delete_volume", txn_)

        await run_charged(self._charger, delete,
                          _provisions(volume.userid, volume.project, -volume.size),
                          force=True, name=f"cyclades: delete volume {volume_id}")
        await self._remove_map(volume.map_name)
        await self._db.run("cyclades.volume_deleted", store.update_volume_txn, volume_id,
                           deleted=True, status="deleted")

    async def extend(self, user: str, volume_id: str, new_size: int) -> Volume:
        """Grow an ``available`` volume to ``new_size`` GiB (the difference
        charged)."""
        volume = await self.volume(user, volume_id)
        if volume.status != "available" or not volume.thin:
            raise errors.BadRequest(f"Volume {volume_id} is {volume.status}: only an"
                                    " available volume can be extended.")
        if not volume.size < new_size <= MAX_SIZE_GB:
            raise errors.BadRequest(f"new_size must be more than {volume.size} GiB and at"
                                    f" most {MAX_SIZE_GB}.")

        async def extend(attempt: Attempt) -> Volume:
            def txn_(txn: Any) -> Volume:
                locked = store.volume_txn(txn, volume_id, for_update=True)
                if locked is None or locked.status != "available" \
                        or locked.size != volume.size:
                    raise errors.Conflict(f"Volume {volume_id} changed meanwhile; try again.")
                changed = store.update_volume_txn(txn, volume_id, size=new_size)
                assert changed is not None
                if attempt.serial is not None:
                    decide_txn(txn, attempt.component, attempt.serial, True)
                return changed
            changed: Volume = await self._db.run("cyclades.extend_volume", txn_)
            return changed

        changed = await run_charged(
            self._charger, extend,
            _provisions(volume.userid, volume.project, new_size - volume.size),
            name=f"cyclades: extend volume {volume_id}")
        await self.thin.grow(volume.map_name, new_size * GiB)
        return changed

    async def reassign(self, user: str, volume_id: str, project: str) -> Volume:
        """Move a volume (and its ``cyclades.disk``) to ``project`` (one
        commission, accepted with the change; 413 when ``project`` cannot
        hold it).  A boot volume its server's charge covers moves with its
        server, not alone (400)."""
        volume = await self.volume(user, volume_id)
        if not volume.charged:
            raise errors.BadRequest(f"Volume {volume_id} is its server's boot disk: reassign"
                                    " the server.")
        if volume.status not in ("available", "in-use"):
            raise errors.BadRequest(f"Volume {volume_id} is {volume.status}.")
        if project == volume.project:
            return volume
        moved = (_provisions(volume.userid, volume.project, -volume.size)
                 + _provisions(volume.userid, project, volume.size))

        async def move(attempt: Attempt) -> Volume:
            def txn_(txn: Any) -> Volume:
                locked = store.volume_txn(txn, volume_id, for_update=True)
                if locked is None or locked.project != volume.project \
                        or locked.size != volume.size:
                    raise errors.Conflict(f"Volume {volume_id} changed meanwhile; try again.")
                changed = store.update_volume_txn(txn, volume_id, project=project)
                assert changed is not None
                if attempt.serial is not None:
                    decide_txn(txn, attempt.component, attempt.serial, True)
                return changed
            changed: Volume = await self._db.run("cyclades.reassign_volume", txn_)
            return changed

        return await run_charged(self._charger, move, moved,
                                 name=f"cyclades: reassign volume {volume_id}")

    # -- attachments --------------------------------------------------------------

    async def attach(self, user: str, server: Server, volume_id: str) -> Volume:
        """Attach an available thin volume to ``server`` (its own, on a thin
        flavor): a Ganeti disk is added; ``attaching`` until the job ends."""
        volume = await self.volume(user, volume_id)
        if server.userid != volume.userid:
            raise errors.NotFound(f"Volume {volume_id} could not be found.")
        if volume.status != "available":
            raise errors.BadRequest(f"Volume {volume_id} is {volume.status}, not available.")
        if server.flavor.disk_template not in THIN_TEMPLATES:
            raise errors.BadRequest(f"Server {server.id} has {server.flavor.disk_template}"
                                    " disks: only servers of a thin volume type take volumes.")
        if server.deleted or server.backend_id is None or server.operstate == "ERROR":
            raise errors.Conflict(f"Server {server.id} cannot take volumes now.")

        def claim(txn: Any) -> Volume:
            locked = store.volume_txn(txn, volume_id, for_update=True)
            if locked is None or locked.status != "available":
                raise errors.BadRequest(f"Volume {volume_id} is no longer available.")
            changed = store.update_volume_txn(txn, volume_id, status="attaching",
                                              server_id=server.id)
            assert changed is not None
            return changed
        backend = await self._backend(server)
        claimed: Volume = await self._db.run("cyclades.volume_attaching", claim)
        try:
            # Hot-plugged where the hypervisor can (KVM); elsewhere a running
            # server sees the disk from its next start.
            job = await self._rapi_of(backend).modify(
                server.instance_name, disks=[["add", -1, disk_params(claimed)]],
                hotplug=_hotplug(server, backend))
        except (RapiUnavailable, RapiError) as e:
            await self._db.run("cyclades.volume_attach_failed", store.update_volume_txn,
                               volume_id, status="available", server_id=None)
            raise errors.ServiceUnavailable(f"Could not attach volume {volume_id}: {e}") \
                from None
        changed: Volume | None = await self._db.run(
            "cyclades.volume_job", store.update_volume_txn, volume_id, job_id=job)
        assert changed is not None
        return changed

    async def detach(self, user: str, server: Server, volume_id: str) -> Volume:
        """Detach an ``in-use`` volume from ``server`` (not its boot disk):
        the Ganeti disk is removed (the map stays); ``detaching`` until
        the job ends."""
        volume = await self.volume(user, volume_id)
        if volume.server_id != server.id:
            raise errors.NotFound(f"Volume {volume_id} is not attached to server"
                                  f" {server.id}.")
        if volume.status != "in-use":
            raise errors.BadRequest(f"Volume {volume_id} is {volume.status}, not in-use.")
        if volume.bootable and volume.delete_on_termination:
            raise errors.BadRequest(f"Volume {volume_id} is the boot disk of server"
                                    f" {server.id}.")
        backend = await self._backend(server)
        hotplug = _hotplug(server, backend)
        if server.operstate != "STOPPED" and not hotplug:
            # Ganeti removes a disk from a running instance only by hotplug,
            # which only KVM does.
            raise errors.Conflict(f"Server {server.id} is running on a cluster that cannot"
                                  " hot-unplug disks: stop it to detach the volume.")

        def claim(txn: Any) -> Volume:
            locked = store.volume_txn(txn, volume_id, for_update=True)
            if locked is None or locked.status != "in-use" or locked.server_id != server.id:
                raise errors.BadRequest(f"Volume {volume_id} changed meanwhile.")
            changed = store.update_volume_txn(txn, volume_id, status="detaching")
            assert changed is not None
            return changed
        await self._db.run("cyclades.volume_detaching", claim)
        try:
            job = await self._rapi_of(backend).modify(
                server.instance_name, disks=[["remove", volume.map_name, {}]],
                hotplug=hotplug)
        except (RapiUnavailable, RapiError) as e:
            await self._db.run("cyclades.volume_detach_failed", store.update_volume_txn,
                               volume_id, status="in-use")
            raise errors.ServiceUnavailable(f"Could not detach volume {volume_id}: {e}") \
                from None
        changed: Volume | None = await self._db.run(
            "cyclades.volume_job", store.update_volume_txn, volume_id, job_id=job)
        assert changed is not None
        return changed

    # -- the volumes of a new server ------------------------------------------------

    async def boot_source(self, user: str, device: Any, project: str | None = None,
                          ) -> tuple[Any, tuple[Any, ...]]:
        """The image and the origin of the boot volume a
        ``block_device_mapping_v2`` entry (``requests.BlockDevice``) asks
        for: an image (as ``user`` acting in ``project`` reads it), a
        snapshot (its published image) or an existing available volume
        (the image it was made from)."""
        if device.source == "image":
            image = await self._image(user, device.uuid, project)
            return image, ("image", image)
        if device.source == "snapshot":
            snap = await self.snapshot(user, device.uuid)
            if snap.status != "available" or not snap.image_id:
                raise errors.BadRequest(f"Snapshot {snap.id} is {snap.status}, not available.")
            return await self._image(user, snap.image_id), ("snapshot", snap)
        volume = await self.volume(user, device.uuid)
        if volume.status != "available" or not volume.thin:
            raise errors.BadRequest(f"Volume {volume.id} is {volume.status}, not an available"
                                    " thin volume.")
        kind, _, ident = volume.source.partition(":")
        if kind == "snapshot":
            ident = (await self.snapshot(volume.userid, ident)).image_id
        elif kind != "image":
            raise errors.BadRequest(f"Volume {volume.id} was not made from an image or a"
                                    " snapshot: it cannot boot a server.")
        return await self._image(user, ident), ("volume", volume)

    async def extra_volume(self, user: str, device: Any) -> Volume:
        """An existing volume to attach to a new server: available and thin."""
        volume = await self.volume(user, device.uuid)
        if volume.status != "available" or not volume.thin:
            raise errors.BadRequest(f"Volume {volume.id} is {volume.status}, not an available"
                                    " thin volume.")
        return volume

    async def server_disks(self, server: Server, image: Any, boot: tuple[Any, ...] | None,
                           boot_delete: bool, extras: Sequence[tuple[Volume, bool]]
                           ) -> list[dict[str, Any]]:
        """The Ganeti disks of a new server on a thin flavor: its boot volume
        (a new map cloned from ``boot``, an image by default, sized as the
        flavor's disk and covered by the server's charge; or an existing
        volume, adopted) and ``extras`` (existing volumes, each with whether
        it goes with the server).  Every volume is ``attaching`` until the
        create job ends (``sync_disks_txn``)."""
        if self.thin is None:
            raise errors.BadRequest("Thin volumes need the volume service, which does not"
                                    " run here.")
        boot = boot or ("image", image)
        size = server.flavor.disk
        volumes: list[Volume] = []
        if boot[0] == "volume":
            adopted: Volume = boot[1]
            if adopted.size > size:
                raise errors.BadRequest(f"Volume {adopted.id} ({adopted.size} GiB) is larger"
                                        f" than the flavor's disk ({size} GiB).")
            volumes.append(await self._claim(adopted, server, boot_delete, bootable=True))
        else:
            volume_id = str(uuid.uuid4())
            source = f"{boot[0]}:{boot[1].id}"

            def boot_txn(txn: Any) -> Volume:
                template = server.flavor.disk_template
                store.ensure_types_txn(txn, [template])
                vtype = store.type_txn(txn, template)
                assert vtype is not None
                return store.create_volume_txn(
                    txn, volume_id, server.userid, server.project, size, vtype,
                    source=source, server_id=server.id, bootable=True, charged=False,
                    delete_on_termination=boot_delete, status="attaching")
            root: Volume = await self._db.run("cyclades.boot_volume", boot_txn)
            volumes.append(root)
            try:
                if boot[0] == "snapshot":
                    await self.thin.clone(root.map_name, boot[1].map_name, size * GiB)
                else:
                    account, container, path = image_module.parse_location(boot[1].location)
                    hashmap = await self.objects.hashmap(server.userid, account, container,
                                                         path, server.project)
                    if hashmap.size > size * GiB:
                        raise errors.BadRequest(f"The image ({hashmap.size} bytes) is larger"
                                                f" than the flavor's disk ({size} GiB).")
                    await self.thin.clone_hashmap(root.map_name, hashmap.hashes,
                                                  hashmap.size, size * GiB)
            except (LookupError, ValueError, OSError) as e:
                raise errors.ServiceUnavailable(f"The boot volume could not be made: {e}") \
                    from None
        for volume, delete in extras:
            volumes.append(await self._claim(volume, server, delete))
        return [disk_params(v) for v in volumes]

    async def _claim(self, volume: Volume, server: Server, delete: bool,
                     bootable: bool = False) -> Volume:
        def txn_(txn: Any) -> Volume:
            locked = store.volume_txn(txn, volume.id, for_update=True)
            if locked is None or locked.status != "available":
                raise errors.BadRequest(f"Volume {volume.id} is no longer available.")
            fields: dict[str, Any] = {"status": "attaching", "server_id": server.id,
                                      "delete_on_termination": delete}
            if bootable:
                fields["bootable"] = True
            changed = store.update_volume_txn(txn, volume.id, **fields)
            assert changed is not None
            return changed
        claimed: Volume = await self._db.run("cyclades.claim_volume", txn_)
        return claimed

    @staticmethod
    def sync_disks_txn(txn: Any, server: Server, disks: Sequence[Mapping[str, Any]] | None,
                       *, removed: bool = False, failed_change: bool = False,
                       failed_create: bool = False) -> list[str]:
        """Follow Ganeti's disks of ``server`` (a finalized job, in the
        update path's transaction): attaching volumes whose disk is there
        become in-use, detaching ones whose disk is gone available; a
        failed change puts them back.  A removed server (or one whose
        create failed) lets its volumes go: those deleted with it are
        marked deleting, the others become available.  Returns the ids of
        the volumes to delete now (``finish_removed``, after the commit)."""
        volumes = store.volumes_txn(txn, server_id=server.id)
        names = {d.get("name") for d in disks or ()}
        doomed: list[str] = []
        for v in volumes:
            present = v.map_name in names
            if removed or failed_create:
                # A failed create deletes only the boot volume made for the
                # server; volumes the user brought are given back.
                if v.delete_on_termination and (removed or not v.charged):
                    store.update_volume_txn(txn, v.id, status="deleting", server_id=None)
                    doomed.append(v.id)
                else:
                    store.update_volume_txn(txn, v.id, status="available", server_id=None,
                                            device="")
                continue
            if disks is None:
                continue
            if v.status == "attaching":
                if present:
                    store.update_volume_txn(txn, v.id, status="in-use")
                elif failed_change:
                    store.update_volume_txn(txn, v.id, status="available", server_id=None)
            elif v.status == "detaching":
                if not present:
                    store.update_volume_txn(txn, v.id, status="available", server_id=None,
                                            device="")
                elif failed_change:
                    store.update_volume_txn(txn, v.id, status="in-use")
        return doomed

    async def finish_removed(self, volume_ids: Sequence[str]) -> None:
        """After a removed server's transaction: delete the maps of its
        volumes that went with it and release their sizes."""
        for volume_id in volume_ids:
            volume: Volume | None = await self._db.run("cyclades.volume", store.volume_txn,
                                                       volume_id)
            if volume is None or volume.deleted:
                continue
            await self._remove_map(volume.map_name)
            if not volume.charged:
                await self._db.run("cyclades.volume_deleted", store.update_volume_txn,
                                   volume_id, deleted=True, status="deleted")
                continue

            async def gone(attempt: Attempt, volume_id: str = volume_id) -> None:
                def txn_(txn: Any) -> None:
                    store.update_volume_txn(txn, volume_id, deleted=True, status="deleted")
                    if attempt.serial is not None:
                        decide_txn(txn, attempt.component, attempt.serial, True)
                await self._db.run("cyclades.volume_deleted", txn_)

            await run_charged(self._charger, gone,
                              _provisions(volume.userid, volume.project, -volume.size),
                              force=True, name=f"cyclades: volume {volume_id} of a"
                                               " removed server")

    # -- images for the OS definition ------------------------------------------------

    def deploy_params(self, deployed: bool) -> dict[str, str]:
        """What the build parameters tell the OS definition about the image:
        ``img_deployed`` "yes" when the disk already holds it (a thin clone),
        else where to read it: ``img_nbd`` (JSON: host, port, tls) serves it
        as the export ``image_export_name(INSTANCE_NAME)``.  Empty without
        the volume service."""
        if self.thin is None:
            return {}
        host, port, tls = self.thin.nbd
        return {"img_deployed": "yes" if deployed else "no",
                "img_nbd": json.dumps({"host": host, "port": port, "tls": tls})}

    async def export_image(self, server: Server, image: Any) -> None:
        """Export ``image`` read-only for ``server``'s build (nothing copied)."""
        if self.thin is None:
            return
        account, container, path = image_module.parse_location(image.location)
        hashmap = await self.objects.hashmap(server.userid, account, container, path,
                                             server.project)
        try:
            await self.thin.export_hashmap(image_export_name(server.instance_name),
                                           hashmap.hashes, hashmap.size)
        except (LookupError, ValueError, OSError) as e:
            raise errors.ServiceUnavailable(f"The image could not be exported: {e}") from None

    async def drop_image_export(self, instance_name: str) -> None:
        """The build ended: its image export goes."""
        await self._remove_map(image_export_name(instance_name))

    # -- snapshots ----------------------------------------------------------------

    async def snapshot(self, user: str, snapshot_id: str) -> Snapshot:
        found: Snapshot | None = None
        if _uuid(snapshot_id):
            found = await self._db.run("cyclades.snapshot", store.snapshot_txn, snapshot_id)
        if found is None or found.deleted or found.userid != user:
            raise errors.NotFound(f"Snapshot {snapshot_id} could not be found.")
        return found

    async def snapshots(self, user: str) -> list[Snapshot]:
        found: list[Snapshot] = await self._db.run("cyclades.snapshots",
                                                   store.snapshots_txn, userid=user)
        return found

    async def create_snapshot(self, user: str, volume_id: str, *, name: str = "",
                              description: str = "", force: bool = False,
                              metadata: Mapping[str, str] | None = None) -> Snapshot:
        """Freeze ``volume_id`` as a new snapshot (``creating``) and publish
        it as an image in the background (``available`` once published)."""
        volume = await self.volume(user, volume_id)
        if not volume.thin:
            raise errors.BadRequest(f"Volume {volume_id} is not a thin volume.")
        if volume.status == "in-use" and not force:
            raise errors.BadRequest(f"Volume {volume_id} is in use: give force to snapshot"
                                    " it anyway.")
        if volume.status not in ("available", "in-use"):
            raise errors.BadRequest(f"Volume {volume_id} is {volume.status}.")
        snapshot_id = str(uuid.uuid4())
        made: Snapshot = await self._db.run(
            "cyclades.create_snapshot", lambda txn: store.create_snapshot_txn(
                txn, snapshot_id, user, volume.project, volume.id, volume.size, name=name,
                description=description, metadata=dict(metadata or {}), status="creating"))
        try:
            await self.thin.snapshot(volume.map_name, made.map_name)
        except (KeyError, ValueError, OSError) as e:
            log.warn("snapshot {id} of volume {v} failed: {e}", id=snapshot_id, v=volume_id,
                     e=e)
            failed: Snapshot | None = await self._db.run(
                "cyclades.snapshot_failed", store.update_snapshot_txn, snapshot_id,
                status="error")
            assert failed is not None
            return failed
        d = defer.ensureDeferred(self._publish(made))
        self._publishing.add(d)
        d.addBoth(lambda _: self._publishing.discard(d))
        return made

    async def _publish(self, snap: Snapshot) -> None:
        """The snapshot's bytes as ``<owner>/snapshots/<name>``, registered
        as an image; ``available`` (or ``error``)."""
        status, image_id = "error", ""
        try:
            size, hashes = await self.thin.hashmap(snap.map_name)
            path = f"{snap.name or 'snapshot'}-{snap.id}"
            await self.objects.create_from_hashmap(
                snap.userid, snap.userid, image_module.SNAPSHOTS_CONTAINER, path, size, hashes)
            image = await self.images.register(
                snap.userid,
                image_module.location_of(snap.userid, image_module.SNAPSHOTS_CONTAINER, path),
                {"name": snap.name or f"snapshot {snap.id}", "description": snap.description,
                 "volume_id": snap.volume_id})
            status, image_id = "available", image.id
        except Exception:
            log.failure("publishing snapshot {id} failed", id=snap.id)
        await self._db.run("cyclades.snapshot_published", store.update_snapshot_txn, snap.id,
                           status=status, image_id=image_id)

    async def update_snapshot(self, user: str, snapshot_id: str, *, name: str | None = None,
                              description: str | None = None,
                              metadata: Mapping[str, str] | None = None) -> Snapshot:
        await self.snapshot(user, snapshot_id)
        fields: dict[str, Any] = {}
        if name is not None:
            fields["name"] = name
        if description is not None:
            fields["description"] = description
        if metadata is not None:
            fields["metadata"] = dict(metadata)
        changed: Snapshot | None = await self._db.run(
            "cyclades.update_snapshot", lambda txn: store.update_snapshot_txn(
                txn, snapshot_id, **fields))
        assert changed is not None
        return changed

    async def delete_snapshot(self, user: str, snapshot_id: str) -> None:
        """Delete a snapshot that is not being made: its map goes, and so
        does its image (the file in the owner's ``snapshots`` container,
        whose bytes leave the owner's ``pithos.diskspace``)."""
        snap = await self.snapshot(user, snapshot_id)
        if snap.status == "creating":
            raise errors.BadRequest(f"Snapshot {snapshot_id} is still being made.")
        await self._remove_map(snap.map_name)
        if snap.image_id:
            # Its image is its file in the owner's snapshots container: both go.
            try:
                image = await self.images.get(user, snap.image_id)
                account, container, path = image_module.parse_location(image.location)
                await self.objects.delete(user, account, container, path)
            except errors.NotFound:
                pass
        await self._db.run("cyclades.snapshot_deleted", store.update_snapshot_txn,
                           snapshot_id, deleted=True, status="deleted")

    async def drain(self) -> None:
        """Wait for snapshots being published."""
        while self._publishing:
            await defer.DeferredList(list(self._publishing))

    # -- helpers ------------------------------------------------------------------

    async def _image(self, user: str, image_id: str, project: str | None = None) -> Any:
        try:
            return await self.images.get(user, image_id, project)
        except errors.NotFound:
            raise errors.BadRequest(f"Image {image_id} could not be found.") from None

    async def _remove_map(self, name: str) -> None:
        if self.thin is None:
            return
        try:
            await self.thin.remove(name)
        except KeyError:
            pass

    async def _backend(self, server: Server) -> GanetiBackend:
        backend: GanetiBackend | None = None
        if server.backend_id is not None:
            backend = await self._db.run("cyclades.backend", compute_store.backend_txn,
                                         server.backend_id)
        if backend is None:
            raise errors.Conflict(f"Server {server.id} has no Ganeti backend.")
        return backend

    def _rapi_of(self, backend: GanetiBackend) -> Any:
        return self._rapi_pool.client(rapi_target(backend, self.rapi_timeout))


def _hotplug(server: Server, backend: GanetiBackend) -> bool:
    """A disk change on a running server is hot-plugged: only KVM can
    (Ganeti refuses hotplug on the others)."""
    return server.operstate == "STARTED" and backend.hypervisor == "kvm"


def image_export_name(instance_name: str) -> str:
    """The NBD export of the image a build of ``instance_name`` deploys
    (the OS definition derives it from ``INSTANCE_NAME``)."""
    return f"snf-img-{instance_name}"


def disk_params(volume: Volume) -> dict[str, Any]:
    """The Ganeti disk of a thin volume: the provider adopts the map named
    like the disk (``VOL_CNAME``) and, ``managed``, leaves it on removal."""
    return {"size": volume.size * 1024, "name": DISK_PREFIX + volume.id,
            "provider": PROVIDER, "managed": "yes"}


def _uuid(text: str) -> bool:
    try:
        uuid.UUID(str(text))
    except ValueError:
        return False
    return True


__all__ = ["DISK", "PROVIDER", "Volumes", "disk_params", "image_export_name"]
