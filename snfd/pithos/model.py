"""The values the storage backend hands to its callers (the HTTP layer, the
``snf-manage`` commands, the image service): accounts, containers,
objects, permissions.  Plain frozen attrs classes, no rows or cursors.

Times are epoch seconds (``float``).  ``meta`` maps hold the object's
attributes in the ``pithos`` domain under their header names:
``X-Object-Meta-<Key>`` (user metadata, key normalised), and the stored
content headers ``Content-Encoding``, ``Content-Disposition``,
``X-Object-Manifest`` and ``X-Static-Large-Object``.  Containers and
accounts use ``X-Container-Meta-<Key>`` and ``X-Account-Meta-<Key>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import attrs

VERSIONING = ("auto", "none")


ANYONE = ".r:*"
"""The read entry that names everyone, callers without a token too
(Swift's ``X-Container-Read: .r:*``); ``*`` names every authenticated
user.  It absorbs ``*`` and every other entry of a read list."""


@attrs.frozen
class Permissions:
    """Sharing of one path: who may read, who may write (write implies
    read).  Entries are user uuids, ``<owner uuid>:<group>``, ``*`` or (to
    read only) ``ANYONE``."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.read or self.write)


@attrs.frozen
class ContainerPolicy:
    """``quota``: bytes, 0 = unlimited; ``versioning``: auto | none;
    ``project``: the project whose ``pithos.diskspace`` the container uses;
    ``storage``: its storage policy as stored (``""``: none stored, policy
    0; see ``snfd.pithos.policies``), known to everyone who sees the
    container."""

    quota: int = 0
    versioning: str = "auto"
    project: str = ""
    storage: str = ""


@attrs.frozen
class AccountInfo:
    """An account as HEAD/GET show it.  For a caller other than the owner
    only ``name`` and ``mtime`` are meaningful (the rest is empty)."""

    name: str
    count: int
    bytes: int
    mtime: float
    until: float | None = None
    meta: dict[str, str] = attrs.Factory(dict)
    groups: dict[str, tuple[str, ...]] = attrs.Factory(dict)
    # pithos.diskspace limit per project the account draws from (bytes).
    quotas: dict[str, int] = attrs.Factory(dict)
    # The account path's own sharing (Swift account ACLs; owner only).
    sharing: Permissions | None = None
    # Objects in all its containers.
    objects: int = 0
    # (containers, objects, bytes) by storage policy name (owner only).
    storage: dict[str, tuple[int, int, int]] = attrs.Factory(dict)


@attrs.frozen
class ContainerInfo:
    account: str
    name: str
    count: int
    bytes: int
    mtime: float
    policy: ContainerPolicy = ContainerPolicy()
    until: float | None = None
    meta: dict[str, str] = attrs.Factory(dict)
    # Sorted user-meta keys (``X-Object-Meta-`` stripped) used by objects.
    object_meta: tuple[str, ...] = ()
    # The container path's own sharing (Swift container ACLs; owner only).
    sharing: Permissions | None = None


def _read_only(meta: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(meta))


@attrs.frozen
class ContainerSettings:
    """What a container's owner set that decides how requests for it are
    served (Swift's ``get_container_info`` as its middleware reads it):
    the container's node, policy, metadata and the container path's own
    sharing.  Never its statistics, which every write changes.  A node
    keeps these between requests (``snfd.pithos.settings_cache``), so
    ``meta`` is read-only."""

    account: str
    name: str
    node: int
    policy: ContainerPolicy = ContainerPolicy()
    meta: Mapping[str, str] = attrs.field(factory=dict, converter=_read_only)
    sharing: Permissions | None = None


@attrs.frozen
class ObjectInfo:
    """One version of an object.

    ``serial`` is the public version id; ``hash`` the Merkle root;
    ``checksum`` the MD5 of the content (hex) or ``""`` while unknown;
    ``mtime`` the version's time; ``hashes`` the hashmap (``None`` in
    listings).  ``sharing`` is the path's own permissions (latest version,
    owner's view); ``shared_by`` the ancestor directory object granting the
    caller access; ``allowed_to`` ``"read"``/``"write"`` for a non-owner;
    ``public`` the public link token (owner only).  ``deleted`` marks a
    deletion marker (only ever returned by version reads).
    """

    account: str
    container: str
    name: str
    serial: int
    uuid: str
    hash: str
    checksum: str
    size: int
    type: str
    mtime: float
    muser: str
    meta: dict[str, str] = attrs.Factory(dict)
    hashes: list[str] | None = None
    block_size: int = 4 * 1024 * 1024
    sharing: Permissions | None = None
    shared_by: str | None = None
    allowed_to: str | None = None
    public: str | None = None
    deleted: bool = False

    @property
    def path(self) -> str:
        return f"{self.account}/{self.container}/{self.name}"


@attrs.frozen
class Subdir:
    """A virtual directory in a listing with a delimiter."""

    name: str


@attrs.frozen
class Sharer:
    """An account that shares something with the caller."""

    name: str
    mtime: float


@attrs.frozen
class VersionEntry:
    """One version in a container's history (Swift's ``?versions``
    listing): ``info`` carries no metadata or hashmap, ``info.deleted``
    marks a deletion marker; ``latest``: it is what the object is now
    (its current version, or the marker of a deleted object)."""

    info: ObjectInfo
    latest: bool
