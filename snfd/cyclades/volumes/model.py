"""The values of the volume service: volume types, volumes, snapshots."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import attrs

#: Where a volume's data lives in Archipelago: the map of this name.
MAP_PREFIX = "snf-vol-"
#: The Ganeti disk name of an attached volume (the ExtStorage provider
#: takes it as the map's name: ``VOL_CNAME``).
DISK_PREFIX = MAP_PREFIX
SNAPSHOT_MAP_PREFIX = "snf-snap-"
#: The disk templates whose volumes are thin maps of the volume service.
THIN_TEMPLATES = ("ext_archipelago",)

GiB = 1 << 30

VOLUME_STATES = ("creating", "available", "attaching", "in-use", "detaching",
                 "deleting", "error")
SNAPSHOT_STATES = ("creating", "available", "deleting", "error")


@attrs.frozen
class VolumeType:
    """A kind of volume: the Ganeti disk template its volumes are made
    with (``SNF:disk_template``); ``detachable`` when a volume of it may
    leave its server (thin volumes)."""

    id: int
    name: str
    disk_template: str
    description: str = ""
    deleted: bool = False

    @property
    def detachable(self) -> bool:
        return self.disk_template in THIN_TEMPLATES


@attrs.frozen
class Volume:
    """A row of ``cyclades_volumes``; ``size`` in GiB."""

    id: str
    name: str
    description: str
    userid: str
    project: str
    size: int
    volume_type: VolumeType
    source: str = ""
    server_id: int | None = None
    device: str = ""
    delete_on_termination: bool = False
    bootable: bool = False
    #: its size is charged to cyclades.disk on its own (not a boot volume
    #: its server's flavor covers)
    charged: bool = True
    status: str = "creating"
    job_id: int | None = None
    serial: int | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    deleted: bool = False
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None

    @property
    def map_name(self) -> str:
        return MAP_PREFIX + self.id

    @property
    def thin(self) -> bool:
        return self.volume_type.disk_template in THIN_TEMPLATES


@attrs.frozen
class Snapshot:
    """A row of ``cyclades_snapshots``; ``size`` in GiB; ``image_id`` the
    uuid of the image file it was published as (empty until then)."""

    id: str
    name: str
    description: str
    userid: str
    project: str
    volume_id: str
    size: int
    status: str = "creating"
    image_id: str = ""
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    deleted: bool = False
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None

    @property
    def map_name(self) -> str:
        return SNAPSHOT_MAP_PREFIX + self.id
