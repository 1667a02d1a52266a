"""The storage service's logic (Synnefo's "modular backend"): every Pithos
operation, its permission check, versioning, statistics and quota charge.

The HTTP layer (``api.py``) parses requests and calls one method per
operation; SQL lives in ``store.py``; bytes live in the block store.

Every method takes the caller (``user``, a user uuid) first and checks it
against the owner, the sharing rules and the groups of the path on every
call.  Errors are ``snfd.errors`` faults:

- ``NotFound``: the account, container, object or version does not exist,
  *or* the caller may not know that it exists (no read permission);
- ``Forbidden``: the caller may read but not do this (write, change
  permissions, use ``until`` on another's account...);
- ``Conflict``: a container that is not empty, a stale ``expect_serial``;
  ``MissingBlocks`` (a ``Conflict``) lists the block hashes a hashmap
  names that the block store lacks;
- ``BadRequest``: bad names, policies, sharing, group or metadata limits;
- ``OverLimit`` (413): container quota or account quota
  (``pithos.diskspace``) exceeded; nothing was stored.

Every change creates a new version (metadata changes, deletes too) and
keeps the statistics of the object's container and account exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from snfd import errors
from snfd.pithos.model import (
    AccountInfo,
    ContainerInfo,
    ObjectInfo,
    Permissions,
    Sharer,
    Subdir,
)

# Limits of the reference.
MAX_CONTAINER_NAME = 256
MAX_OBJECT_NAME = 1024
MAX_META_KEYS = 32
MAX_GROUPS = 32
MAX_GROUP_MEMBERS = 32
MAX_LIST = 10000

# ``permissions`` argument meaning "leave the permissions as they are".
KEEP = None


class MissingBlocks(errors.Conflict):
    """A hashmap names blocks the store does not have (409; the body is the
    JSON list of their hashes)."""

    def __init__(self, hashes: Sequence[str]):
        super().__init__(f"{len(hashes)} blocks are missing.")
        self.hashes = list(hashes)


class Backend:
    """See the module docstring.

    @param db: the node's ``IDatabase``.
    @param blocks: the node's ``IBlockStore``.
    @param charger: a ``snfd.quota.serials.Charger`` for component
        ``pithos`` (``None``: no account quota is charged).
    @param clock: ``seconds()`` for version times.
    """

    def __init__(self, db: Any, blocks: Any, charger: Any, clock: Any):
        self.db = db
        self.blocks = blocks
        self.charger = charger
        self.clock = clock

    # -- top level ------------------------------------------------------------

    async def sharers(self, user: str, marker: str | None = None,
                      limit: int = MAX_LIST) -> list[Sharer]:
        """Accounts (other than ``user``'s) that share an object with
        ``user`` directly, through a group of theirs, or with ``*``;
        ascending by name, after ``marker``."""
        raise NotImplementedError

    # -- account --------------------------------------------------------------

    async def account(self, user: str, account: str,
                      until: float | None = None) -> AccountInfo:
        """The account's statistics, metadata, groups and quotas (owner).
        Another user gets only name and mtime, and only when the account
        shares something with them (else ``NotFound``); ``until`` is then
        ``Forbidden``.  An account never used answers zeros (accounts are
        created on first write)."""
        raise NotImplementedError

    async def update_account(self, user: str, account: str,
                             meta: Mapping[str, str] | None, replace: bool,
                             groups: Mapping[str, Sequence[str]] | None) -> None:
        """Set ``X-Account-Meta-*`` (``replace``: all user meta are replaced;
        else merged and an empty value deletes) and groups (``None``: groups
        untouched; ``replace``: all groups replaced; else merged and an
        empty member list deletes the group).  Owner only."""
        raise NotImplementedError

    async def containers(self, user: str, account: str, *, marker: str | None = None,
                         end_marker: str | None = None, prefix: str = "",
                         limit: int = MAX_LIST, reverse: bool = False,
                         shared: bool = False, public: bool = False,
                         until: float | None = None) -> list[ContainerInfo]:
        """The account's containers ascending by name (``reverse``:
        descending), strictly after ``marker`` and before ``end_marker``.
        ``shared``/``public``: only those holding shared/public objects
        (``public`` is owner only).  Another user sees only containers
        holding objects shared with them."""
        raise NotImplementedError

    # -- container ------------------------------------------------------------

    async def container(self, user: str, account: str, container: str,
                        until: float | None = None) -> ContainerInfo:
        """One container (``until``: statistics as of that time)."""
        raise NotImplementedError

    async def put_container(self, user: str, account: str, container: str,
                            policy: Mapping[str, str],
                            meta: Mapping[str, str]) -> bool:
        """Create the container; ``True`` if created.  An existing one has
        ``policy`` and ``meta`` merged (as ``update_container`` with
        ``replace=False``) and answers ``False``.  Policy keys: quota,
        versioning, project (others: ``BadRequest``).  Owner only."""
        raise NotImplementedError

    async def update_container(self, user: str, account: str, container: str,
                               meta: Mapping[str, str] | None, replace: bool,
                               policy: Mapping[str, str] | None) -> None:
        """Change metadata (as ``update_account``) and policy (an empty
        value restores the key's default).  Changing ``project`` moves the
        container's bytes to the new project's quota."""
        raise NotImplementedError

    async def delete_container(self, user: str, account: str, container: str,
                               until: float | None = None,
                               delimiter: str | None = None) -> None:
        """Delete an empty container (``Conflict`` if it holds objects).
        ``until``: purge history up to that time, keep the container.
        ``delimiter``: delete every object first, then the container."""
        raise NotImplementedError

    async def objects(self, user: str, account: str, container: str, *,
                      prefix: str = "", delimiter: str | None = None,
                      marker: str | None = None, end_marker: str | None = None,
                      limit: int = MAX_LIST, reverse: bool = False,
                      path_mode: bool = False,
                      meta_filters: Sequence[str] = (),
                      shared: bool = False, public: bool = False,
                      until: float | None = None) -> list[ObjectInfo | Subdir]:
        """The object listing (reference 2.5): lexicographic, ``marker``
        and ``end_marker`` exclusive, virtual directories as ``Subdir``
        when ``delimiter`` is given (a real object of the same name wins),
        ``path_mode`` as the reference's ``path`` parameter, ``meta_filters``
        as its ``meta`` parameter.  Another user sees only what they may
        read.  Entries carry no hashmap."""
        raise NotImplementedError

    # -- objects --------------------------------------------------------------

    async def object(self, user: str, account: str, container: str, name: str,
                     version: int | None = None) -> ObjectInfo:
        """The latest version (or ``version``, which may be in history or
        a deletion marker, then ``deleted``) with its hashmap and, for the
        latest, sharing/public details."""
        raise NotImplementedError

    async def versions(self, user: str, account: str, container: str,
                       name: str) -> list[tuple[int, float]]:
        """``[(serial, mtime)]`` ascending, also for a deleted object."""
        raise NotImplementedError

    async def put_object(self, user: str, account: str, container: str, name: str, *,
                         size: int, hashes: Sequence[str], content_type: str,
                         checksum: str = "", meta: Mapping[str, str] | None = None,
                         permissions: Permissions | None = KEEP,
                         public: bool | None = None,
                         expect_serial: int | None = None,
                         if_none_match: bool = False) -> ObjectInfo:
        """Create a new version from a hashmap (blocks already stored).

        ``meta`` replaces the user meta and content headers (``None``: keep
        the previous version's).  ``expect_serial``: ``Conflict`` unless the
        latest version is that one (read-modify-write updates);
        ``if_none_match``: ``errors.PreconditionFailed`` if the object exists.
        Raises ``MissingBlocks`` when the store lacks blocks.  Charges
        ``pithos.diskspace`` by the size difference (free versioning)."""
        raise NotImplementedError

    async def update_object(self, user: str, account: str, container: str, name: str,
                            meta: Mapping[str, str] | None, replace: bool,
                            permissions: Permissions | None = KEEP,
                            public: bool | None = None) -> ObjectInfo:
        """Metadata and permission changes (POST without data).  ``meta``
        as ``update_account``; ``permissions`` ``Permissions()`` removes
        all sharing; ``public`` ``True``/``False`` publishes/unpublishes.
        Only the owner changes permissions or publishes."""
        raise NotImplementedError

    async def copy_object(self, user: str, src_account: str, src_container: str,
                          src_name: str, dst_account: str, dst_container: str,
                          dst_name: str, *, move: bool = False,
                          version: int | None = None, content_type: str | None = None,
                          meta: Mapping[str, str] | None = None,
                          replace_meta: bool = False,
                          permissions: Permissions | None = KEEP,
                          public: bool | None = None,
                          delimiter: str | None = None) -> ObjectInfo:
        """Copy (new uuid) or move (same uuid; source gone) an object, or
        with ``delimiter`` every object under ``<src_name><delimiter>`` too.
        Metadata is copied then updated by ``meta`` (``replace_meta``:
        replaced); sharing and public are not copied.  Needs read on the
        source (write to move) and write on the destination.  Returns the
        destination's new version."""
        raise NotImplementedError

    async def delete_object(self, user: str, account: str, container: str, name: str,
                            until: float | None = None,
                            delimiter: str | None = None) -> None:
        """Delete (a deletion-marker version; permissions and public link
        dropped; quota released), or with ``until`` purge history up to it,
        or with ``delimiter`` every object under ``<name><delimiter>`` too."""
        raise NotImplementedError

    async def public_object(self, token: str) -> ObjectInfo:
        """The latest version of the object behind a public link (no
        caller); ``NotFound`` for an unknown or withdrawn token."""
        raise NotImplementedError

    async def set_checksum(self, serial: int, checksum: str) -> None:
        """Record the MD5 of a version computed after it was created (a
        hashmap upload or a partial update)."""
        raise NotImplementedError

    # -- garbage collection ---------------------------------------------------

    async def collect_garbage(self, grace: float, batch: int = 1000) -> tuple[int, int]:
        """Remove blocks no version references, sparing any stored or
        refreshed within ``grace`` seconds, safely against concurrent
        uploads (see ``gc.py``).  Returns ``(blocks scanned, removed)``."""
        raise NotImplementedError


__all__ = ["Backend", "MissingBlocks", "KEEP", "Subdir"]
