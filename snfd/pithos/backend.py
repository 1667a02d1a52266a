"""The storage service's logic (Synnefo's "modular backend"): every Pithos
operation, its permission check, versioning, statistics and quota charge.

The HTTP layer (``api.py``) parses requests and calls one method per
operation of ``Backend``, this module's façade; SQL lives in ``store.py``;
bytes live in the block store.  Behind the façade:

- ``validation.py``: names, metadata, attributes, sharing, groups and
  policies as the store accepts them (limits in ``rules.py``);
- ``permissions.py``: who may read and write what (sharing, groups,
  directory objects);
- ``reads.py`` and ``writes.py``: the transaction of each operation;
- ``charges.py``: what a write charges to ``pithos.diskspace`` and how it
  runs under its commission;
- ``gc.py``: garbage collection of unreferenced blocks, and the checks
  writers make against it.

Every method takes the caller (``user``, a user uuid) first and checks it
against the owner, the sharing rules and the groups of the path on every
call.  The reads (``object``, ``objects``, ``versions``) also take
``ANONYMOUS``, the caller of a public link, who reads only public objects
(how a large object behind a public link reads its segments).  History
is the owner's: anyone else reads only the current version of an object.
Errors are ``snfd.errors`` faults:

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

Transactions.  A read (HEAD/GET of an object or container) is one
database transaction; a write is one transaction that locks the
container row (``FOR UPDATE``) first, under its quota commission when
it changes usage (``charges.py``).  A write that makes a version
reference blocks re-checks them inside its transaction, against the
collector (``gc.py``); a block is never deleted while a committed
version references it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
from twisted.internet import task

from snfd import errors
from snfd.pithos import charges, reads, store, swift, writes
from snfd.pithos.gc import BlockReferences, MissingBlocks, collect_garbage
from snfd.pithos.hashmap import BLOCK_SIZE, EMPTY_HASH, HashmapError, checked_hashmap
from snfd.pithos.model import (
    AccountInfo,
    ContainerInfo,
    ContainerSettings,
    ObjectInfo,
    Permissions,
    Sharer,
    Subdir,
    VersionEntry,
)
from snfd.pithos.permissions import ANONYMOUS, nameable_blocks_txn
from snfd.pithos.policies import StoragePolicies
from snfd.pithos.rules import MAX_LIST
from snfd.pithos.settings_cache import SettingsCache
from snfd.pithos.validation import (
    USER_META,
    check_account_name,
    check_container_name,
    check_meta,
    check_new_container_name,
    check_new_path,
    check_path,
    checked_groups,
    checked_permissions,
    checked_policy,
    parse_meta_filters,
)

MAX_UNREFERENCED = 5 * 1024 ** 3
"""Bound of one account's block uploads no object references yet, when no
quota holder says what the account has left (see ``reserve_uploads``)."""

# ``permissions`` argument meaning "leave the permissions as they are".
KEEP = None

COLLECTION_WAIT = 30.0
"""Seconds a write whose blocks a running collection has marked waits for
the marks to go before it is refused (a page of a collection is marked
for the time its deletions take: well under a second)."""

T = TypeVar("T")


class Backend:
    """See the module docstring.

    @param db: the node's ``IDatabase``.
    @param blocks: the node's ``IBlockStore`` (with ``missing_now``, the
        synchronous ``missing`` used inside transactions, when it has one).
    @param charger: a ``snfd.quota.serials.Charger`` for component
        ``pithos`` (``None``: no account quota is charged).
    @param clock: ``seconds()`` for version times.
    @param public_token_length: length of new public link tokens (grown
        by one on a collision).
    @param policies: the storage policies (``StoragePolicies``; default:
        one, over ``blocks``).  ``blocks`` is policy 0's store.
    @param settings: the node's ``SettingsCache`` of container settings
        (``container_settings``), which this backend's own changes
        invalidate; default: one that never answers (every read reads).
    """

    def __init__(self, db: Any, blocks: Any, charger: Any, clock: Any, *,
                 public_token_length: int = writes.TOKEN_LENGTH,
                 policies: StoragePolicies | None = None,
                 settings: SettingsCache | None = None):
        self.db = db
        self.blocks = blocks
        self.policies = policies if policies is not None else StoragePolicies.single(blocks)
        self.charger = charger
        self.clock = clock
        self.public_token_length = public_token_length
        self.settings = settings if settings is not None else SettingsCache(lambda: False)
        self._runner = charges.WriteRunner(db, charger)
        self.references = BlockReferences()

    @property
    def block_size(self) -> int:
        return int(getattr(self.blocks, "block_size", BLOCK_SIZE))

    # -- top level ------------------------------------------------------------

    async def sharers(self, user: str, marker: str | None = None,
                      limit: int = MAX_LIST) -> list[Sharer]:
        """Accounts (other than ``user``'s) that share an object with
        ``user`` directly, through a group of theirs, or with ``*``;
        ascending by name, after ``marker``."""
        limit = max(0, min(limit, MAX_LIST))
        rows: list[Sharer] = await self.db.run("pithos.sharers", reads.sharers_txn, user,
                                               marker, limit)
        return rows

    # -- account --------------------------------------------------------------

    async def account(self, user: str, account: str,
                      until: float | None = None) -> AccountInfo:
        """The account's statistics, metadata, groups, quotas and own
        sharing (owner).  Another user gets only name and mtime, and only
        when the account shares something with them (else ``NotFound``);
        ``until`` is then ``Forbidden``.  An account never used answers
        zeros (accounts are created on first write)."""
        check_account_name(account)
        info: AccountInfo = await self.db.run("pithos.account", reads.account_txn, user,
                                              account, until)
        if user == account:
            quotas = await charges.quotas(self.charger, account)
            if quotas:
                info = attrs.evolve(info, quotas=quotas)
            if info.storage:
                info = attrs.evolve(info, storage=self.policies.usage(info.storage))
        return info

    async def account_meta(self, account: str) -> dict[str, str]:
        """The account's metadata alone (one query): what middleware reads
        first to learn whether it has anything to enforce."""
        check_account_name(account)
        meta: dict[str, str] = await self.db.read("pithos.account_meta",
                                                  store.path_meta_txn, account)
        return meta

    async def account_settings(self, account: str) -> AccountInfo:
        """The account as its owner sees it, without the quota holder's
        limits (``quotas`` empty): the statistics and metadata the
        middleware decides on (account quotas, TempURL keys)."""
        check_account_name(account)
        info: AccountInfo = await self.db.run("pithos.account", reads.account_txn, account,
                                              account, None)
        if info.storage:
            info = attrs.evolve(info, storage=self.policies.usage(info.storage))
        return info

    async def update_account(self, user: str, account: str,
                             meta: Mapping[str, str] | None, replace: bool,
                             groups: Mapping[str, Sequence[str]] | None,
                             permissions: Permissions | None = KEEP) -> None:
        """Set ``X-Account-Meta-*`` (``replace``: all user meta are replaced;
        else merged and an empty value deletes) and groups (``None``: groups
        untouched; ``replace``: all groups replaced; else merged and an
        empty member list deletes the group).  ``permissions``: the sharing
        of the account path itself (Swift account ACLs).  Owner only."""
        check_account_name(account)
        if user != account:
            raise errors.Forbidden("Only the owner may change an account.")
        groups_as_stored = checked_groups(groups) if groups is not None else None
        perms = checked_permissions(permissions) if permissions is not None else None
        await self.db.run("pithos.update_account", writes.update_account_txn, account,
                          dict(meta) if meta is not None else None, replace,
                          groups_as_stored, perms, self.clock.seconds())

    async def containers(self, user: str, account: str, *, marker: str | None = None,
                         end_marker: str | None = None, prefix: str = "",
                         limit: int = MAX_LIST, reverse: bool = False,
                         shared: bool = False, public: bool = False,
                         until: float | None = None) -> list[ContainerInfo]:
        """The account's containers ascending by name (``reverse``:
        descending), strictly after ``marker`` and before ``end_marker``.
        ``shared``/``public``: only those holding shared/public objects
        (``public`` is owner only).  Another user sees only containers
        holding objects shared with them (``NotFound`` if none), with
        statistics only for containers they may read whole."""
        check_account_name(account)
        limit = max(0, min(limit, MAX_LIST))
        rows: list[ContainerInfo] = await self.db.run(
            "pithos.containers", reads.containers_txn, user, account, marker, end_marker,
            prefix or "", limit, reverse, shared, public, until)
        return rows

    # -- container ------------------------------------------------------------

    async def container(self, user: str, account: str, container: str,
                        until: float | None = None) -> ContainerInfo:
        """One container (``until``: statistics as of that time).  The
        owner gets policy, metadata, the object meta keys and the
        container path's own sharing; another user who may read it whole
        (container or account ACL) its statistics; one who may only read
        some objects in it its name and mtime."""
        check_account_name(account)
        check_container_name(container)
        if user == account and until is None:  # one statement
            owned: ContainerInfo = await self.db.read(
                "pithos.container", reads.owned_container_txn, account, container)
            return owned
        info: ContainerInfo = await self.db.run(
            "pithos.container", reads.container_txn, user, account, container, until)
        return info

    async def container_settings(self, account: str,
                                 container: str) -> ContainerSettings | None:
        """The container's own settings (policy, metadata, its own
        sharing), whoever asks, or ``None`` when it does not exist: what
        middleware decides how to serve a request on, never who may make
        it.  From the node's ``settings`` cache when it answers, so
        possibly older than a change committed by another node whose
        notification has not arrived yet (never older than this
        backend's own changes)."""
        check_account_name(account)
        check_container_name(container)
        found: ContainerSettings | None = await self.settings.get(
            f"{account}/{container}",
            lambda: self.db.read("pithos.container_settings", reads.container_settings_txn,
                                 account, container))
        return found

    async def _changing(self, account: str, container: str, change: Awaitable[T]) -> T:
        """Await ``change`` of the container's settings, then drop them
        from the node's cache, also when it fails (it may have committed):
        the next read on this node sees it without waiting for its
        notification."""
        try:
            return await change
        finally:
            self.settings.invalidate(f"{account}/{container}")

    async def put_container(self, user: str, account: str, container: str,
                            policy: Mapping[str, str],
                            meta: Mapping[str, str],
                            storage_policy: str | None = None) -> bool:
        """Create the container; ``True`` if created.  An existing one has
        ``policy`` and ``meta`` merged (as ``update_container`` with
        ``replace=False``) and answers ``False``.  Policy keys: quota,
        versioning, project (others: ``BadRequest``).  ``storage_policy``:
        the ``X-Storage-Policy`` asked for (unknown: ``BadRequest``; empty
        or ``None``: the default policy for a new container); an existing
        container in another policy is a ``Conflict``.  Owner only."""
        check_account_name(account)
        check_new_container_name(container)
        if user != account:
            raise errors.Forbidden("Only the owner may create containers.")
        chosen = self.policies.chosen(storage_policy)
        checked = checked_policy(policy)
        await charges.check_project(self.charger, account, checked.get("project"))
        meta = dict(meta)
        check_meta(meta, "X-Container-Meta-")
        created: bool = await self._changing(account, container, self._runner.run(
            "pithos.put_container", writes.put_container_txn, account, container, checked,
            meta, self.clock.seconds(), None if chosen is None else chosen.name,
            self.policies, expect={}, label=f"{account}/{container}"))
        return created

    def container_blocks(self, info: ContainerInfo | ContainerSettings) -> Any:
        """The block store of the container ``info``'s storage policy,
        where new data for it goes."""
        return self.policies.of(info.policy.storage).blocks

    async def update_container(self, user: str, account: str, container: str,
                               meta: Mapping[str, str] | None, replace: bool,
                               policy: Mapping[str, str] | None,
                               permissions: Permissions | None = KEEP) -> None:
        """Change metadata (as ``update_account``) and policy (merged; an
        empty value restores the key's default).  Changing ``project``
        moves the container's bytes to the new project's quota.
        ``permissions``: the sharing of the container path itself (Swift
        container ACLs).  Owner only."""
        check_account_name(account)
        check_container_name(container)
        checked = checked_policy(policy) if policy is not None else None
        if checked is not None and user == account:
            await charges.check_project(self.charger, account, checked.get("project"))
        if meta is not None:
            meta = dict(meta)
        perms = checked_permissions(permissions) if permissions is not None else None
        await self._changing(account, container, self._runner.run(
            "pithos.update_container", writes.update_container_txn, user, account, container,
            meta, replace, checked, perms, self.clock.seconds(),
            label=f"{account}/{container}"))

    async def delete_container(self, user: str, account: str, container: str,
                               until: float | None = None,
                               delimiter: str | None = None) -> None:
        """Delete an empty container (``Conflict`` if it holds objects).
        ``until``: purge history up to that time, keep the container.
        ``delimiter``: delete every object first, then the container.
        Owner only."""
        check_account_name(account)
        check_container_name(container)
        await self._changing(account, container, self._runner.run(
            "pithos.delete_container", writes.delete_container_txn, user, account, container,
            until, delimiter, self.clock.seconds(), label=f"{account}/{container}"))

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
        read (``ANONYMOUS``: what a container open to all lets it read, else
        only public objects).  Entries carry no
        hashmap.  Objects whose ``X-Delete-At`` has come are left out
        (except with ``until``; see ``snfd.pithos.expiry``).

        ``path_mode``: ``prefix`` is the path; the listing holds the
        objects directly under ``<path>/`` (and those whose name ends
        with ``/`` one level down), no ``Subdir``, and not ``<path>/``
        itself (as Swift's).  ``shared``: only
        objects with their own sharing or under a shared directory object.
        Entries carry no metadata; the owner's carry their own sharing
        (not with ``until``) and public token."""
        check_account_name(account)
        check_container_name(container)
        limit = max(0, min(limit, MAX_LIST))
        filters = parse_meta_filters(meta_filters)
        if path_mode:
            delimiter = "/"
            if prefix and not prefix.endswith("/"):
                prefix += "/"
        if delimiter == "":
            delimiter = None
        rows: list[ObjectInfo | Subdir] = await self.db.run(
            "pithos.objects", reads.objects_txn, self.block_size, user, account, container,
            prefix or "", delimiter, marker, end_marker, limit, reverse, path_mode, filters,
            shared, public, until, self.clock.seconds())
        return rows

    # -- objects --------------------------------------------------------------

    async def object(self, user: str, account: str, container: str, name: str,
                     version: int | None = None, project: str | None = None) -> ObjectInfo:
        """The latest version (or ``version``, which may be in history or
        a deletion marker, then ``deleted``) with its metadata and
        hashmap and, for the latest, sharing details: ``sharing`` (owner)
        and ``shared_by`` from the object's own or its directory object's
        sharing, ``allowed_to`` (others), ``public`` (owner).  Only the
        owner reads a ``version`` other than the latest (else
        ``Forbidden``: a grant covers the object as it is now, not its
        history).  ``project``: the scope of the caller's token (sharing
        entries naming it grant to the caller, see ``permissions``)."""
        check_path(account, container, name)
        if user == account:  # one statement
            owned: ObjectInfo = await self.db.read(
                "pithos.object", reads.owned_object_txn, self.block_size, account, container,
                name, version)
            return owned
        info: ObjectInfo = await self.db.run("pithos.object", reads.object_txn,
                                             self.block_size, user, account, container,
                                             name, version, project)
        return info

    async def versions(self, user: str, account: str, container: str,
                       name: str) -> list[tuple[int, float]]:
        """``[(serial, mtime)]`` ascending, also for a deleted object
        (deletion markers are not listed).  Owner only (``Forbidden`` for
        a user who may read the object, ``NotFound`` for others)."""
        check_path(account, container, name)
        found: list[tuple[int, float]] = await self.db.run(
            "pithos.versions", reads.versions_txn, user, account, container, name)
        return found

    async def history(self, user: str, account: str, container: str, *,
                      prefix: str = "", after: tuple[str, int] | None = None,
                      limit: int = MAX_LIST) -> list[VersionEntry]:
        """Every version of every object in the container whose name
        starts with ``prefix``, deletion markers included: by name, and
        within a name newest first; ``after`` is ``(name, serial)``, the
        listing starting strictly after that version of that name (serial
        0: after all of them).  Owner only, as ``versions`` (``Forbidden``
        for a user who may see the container, else as ``objects``)."""
        check_account_name(account)
        check_container_name(container)
        limit = max(0, min(limit, MAX_LIST))
        rows: list[VersionEntry] = await self.db.run(
            "pithos.history", reads.history_txn, self.block_size, user, account, container,
            prefix, after, limit)
        return rows

    async def remove_version(self, user: str, account: str, container: str, name: str,
                             serial: int) -> None:
        """Remove one version of an object for good (a deletion marker
        too), its blocks released as a purge releases them.  Removing the
        current version leaves the object absent (as deleted, without a
        marker; the history before it stays, its sharing and link go);
        removing the newest marker of a deleted object leaves it deleted.
        Needs write permission; only the owner removes a version other
        than the current one (``Forbidden``); ``NotFound`` for a version
        the object does not have."""
        check_path(account, container, name)
        await self._runner.run("pithos.remove_version", writes.remove_version_txn, user,
                               account, container, name, serial, self.clock.seconds(),
                               label=f"{account}/{container}/{name}")

    async def put_object(self, user: str, account: str, container: str, name: str, *,
                         size: int, hashes: Sequence[str], content_type: str,
                         checksum: str = "", meta: Mapping[str, str] | None = None,
                         permissions: Permissions | None = KEEP,
                         public: bool | None = None,
                         expect_serial: int | None = None,
                         if_none_match: bool = False, by_hash: bool = False) -> ObjectInfo:
        """Create a new version from a hashmap (blocks already stored).

        ``by_hash``: the hashes come from the caller (a hashmap upload),
        so only the blocks ``user`` may name count as present (it uploaded
        them or can read an object holding them, see
        ``permissions.nameable_blocks_txn``); the others are missing like
        blocks the store lacks, and the upload records of those named are
        dropped (they are charged as the object's from now on).

        ``meta`` replaces the user meta and content headers (``None``: keep
        the previous version's).  ``expect_serial``: ``Conflict`` unless the
        latest version is that one (read-modify-write updates);
        ``if_none_match``: ``errors.PreconditionFailed`` if the object exists.
        Raises ``MissingBlocks`` when the store lacks blocks.  Charges
        ``pithos.diskspace`` by the size difference (free versioning).
        The returned info carries the hashmap; its ``sharing``/``public``
        are set only when this call changed them."""
        check_new_path(account, container, name)
        try:
            size, hashes = checked_hashmap(size, list(hashes), self.block_size)
        except HashmapError as e:
            raise errors.BadRequest(str(e)) from None
        new_meta = None
        if meta is not None:
            new_meta = dict(meta)  # an empty value is kept, as Swift keeps it
            check_meta(new_meta, USER_META)
        perms = checked_permissions(permissions) if permissions is not None else None
        wanted = list(dict.fromkeys(h for h in hashes if h != EMPTY_HASH))
        if wanted:
            # Present in any policy's store or fallback: the transaction
            # checks the container's, and those it lacks are brought there.
            if len(self.policies) == 1 and not self.policies.has_fallbacks:
                missing = set(await self.blocks.missing(wanted))
            else:
                missing = set(await self.policies.lacking(wanted))
            if by_hash:
                nameable = await self.db.run("pithos.nameable_blocks",
                                             nameable_blocks_txn, user, wanted)
                missing.update(h for h in wanted if h not in nameable)
            if missing:
                raise MissingBlocks([h for h in wanted if h in missing])
        info: ObjectInfo = await self._placed(lambda: self._runner.run(
            "pithos.put_object", writes.put_object_txn, self.policies, self.block_size,
            self.public_token_length, user, account, container, name, size, hashes,
            content_type or "application/octet-stream", checksum or "", new_meta, perms,
            public, expect_serial, if_none_match, by_hash, self.clock.seconds(),
            expect=self._runner.guess(account, container, size),
            label=f"{account}/{container}/{name}"))
        return info

    async def _placed(self, write: Any, attempts: int = 3) -> Any:
        """Run ``write`` (a transaction making versions); when it finds
        blocks missing from its container's store that another storage
        policy's store, or the store's fallback, holds, copy them over and
        run it again.  When its blocks are present but a running
        collection has marked them, wait for the collection to pass them
        (``COLLECTION_WAIT`` at most), then run it again if they are still
        there: the collection spares blocks refreshed within its grace,
        and a block this request named was refreshed moments ago."""
        alone = len(self.policies) == 1 and not self.policies.has_fallbacks
        for attempt in range(attempts):
            try:
                return await write()
            except MissingBlocks as e:
                if e.collecting and attempt < attempts - 1:
                    await self._collection_passed(e)
                    continue
                if (e.blocks is None or alone or attempt == attempts - 1
                        or not await self.policies.bring(e.hashes, e.blocks)):
                    raise
        raise AssertionError("unreachable")

    async def _collection_passed(self, e: MissingBlocks) -> None:
        """Wait until no running collection marks ``e.hashes``, then
        refresh them in their store (``e`` again, naming the absent ones,
        when the collection took any; ``e`` itself when the marks stay)."""
        deadline = self.clock.seconds() + COLLECTION_WAIT
        delay = 0.05
        while await self.db.run("pithos.gc_marked", store.gc_marked_txn, e.hashes):
            if self.clock.seconds() + delay > deadline:
                raise e
            await task.deferLater(self.clock, delay, lambda: None)
            delay = min(delay * 2, 1.0)
        blocks = e.blocks if e.blocks is not None else self.blocks
        absent = await blocks.missing(e.hashes)
        if absent:
            raise MissingBlocks([h for h in e.hashes if h in set(absent)], blocks)

    async def upload_room(self, account: str, container: str, name: str) -> int | None:
        """The most bytes a new version of the object may have before the
        container quota or the account's ``pithos.diskspace`` quota (in
        the container's project) refuses it; ``None``: no known bound.
        An upload longer than this is refused before a block is stored
        (a guess: the write itself decides, under its commission)."""
        room, project, current = await self.db.run(
            "pithos.upload_room", reads.upload_room_txn, account, container, name)
        return reads.with_diskspace(
            room, await charges.diskspace_left(self.charger, account, project), current)

    async def upload_limits(self, user: str, account: str, container: str,
                            name: str) -> tuple[int | None, int, int]:
        """``(room, pending, bound)`` before ``user`` stores data for a new
        version of the object: its ``upload_room``, the bytes of ``user``'s
        unreferenced uploads (block uploads, and uploads that failed after
        their blocks were stored: ``record_uploads``) and the bound they may
        reach (see ``reserve_uploads``): past it, no more uploads until they
        are referenced or expire (``charges.too_many_uploads``).
        One interaction, outside a transaction, when the quota holder
        shares the database."""
        ledger = self._runner.ledger
        if ledger is not None:
            # Read outside a transaction: they are a first check, which the
            # write's own transaction makes again.
            limits: tuple[int | None, int, int] = await self.db.read(
                "pithos.upload_limits", reads.upload_limits_txn, user, account, container,
                name, functools.partial(charges.diskspace_left_txn, ledger),
                MAX_UNREFERENCED)
            return limits
        room = await self.upload_room(account, container, name)
        pending: int = await self.db.run("pithos.uploads_size", store.uploads_size_txn, user)
        return room, pending, await self._upload_bound(user) if pending else MAX_UNREFERENCED

    async def _upload_bound(self, user: str) -> int:
        left = await charges.diskspace_left(self.charger, user, user)
        return MAX_UNREFERENCED if left is None else left

    async def reserve_uploads(self, user: str, size: int | None) -> tuple[int, int]:
        """Take room for a block upload of ``size`` bytes by ``POST`` to a
        container (``None``: a chunked one, given all that is left, at
        most ``swift.MAX_FILE_SIZE``): the blocks ``user`` uploaded that
        no object references yet, with the uploads under way, may take at
        most its remaining ``pithos.diskspace`` (in its own project;
        ``MAX_UNREFERENCED`` without a quota holder).  Checking and taking
        is one transaction.  Returns ``(reservation, bytes taken)``; the
        reservation goes with ``record_uploads``.

        @raise errors.OverLimit: there is not that much room.
        """
        bound = await self._upload_bound(user)
        taken = await self.db.run("pithos.reserve_uploads", store.reserve_uploads_txn,
                                  user, size, bound, swift.MAX_FILE_SIZE)
        if taken is None:
            pending = await self.db.run("pithos.uploads_size", store.uploads_size_txn, user)
            raise errors.OverLimit(
                f"Unreferenced block uploads are limited to {bound} bytes"
                f" ({pending} pending); reference or let them expire first.")
        return taken  # type: ignore[no-any-return]

    async def record_uploads(self, user: str, blocks: Sequence[tuple[str, int]],
                             reservation: int | None = None) -> None:
        """Record ``(hash, size)`` blocks ``user`` stored that no object
        references (a block upload, or an upload that failed after its
        blocks were stored), in place of ``reservation``: they count
        against its bound until a version references them or the garbage
        collector's grace passes, and ``user`` may name them in a hashmap
        (``put_object(by_hash=True)``)."""
        if blocks or reservation is not None:
            await self.db.run("pithos.record_uploads", store.record_uploads_txn, user,
                              list(blocks), reservation)

    async def update_object(self, user: str, account: str, container: str, name: str,
                            meta: Mapping[str, str] | None, replace: bool,
                            permissions: Permissions | None = KEEP,
                            public: bool | None = None,
                            domain: str = store.DOMAIN,
                            content_type: str | None = None) -> ObjectInfo:
        """Metadata and permission changes (POST without data), and a new
        ``content_type`` (Swift's object POST with ``Content-Type``).  ``meta``
        as ``update_account`` (a replacement keeps stored keys other than
        user meta and content headers); ``None`` changes no metadata and
        makes no new version.  ``permissions`` ``Permissions()`` removes
        all sharing; ``public`` ``True``/``False`` publishes/unpublishes.
        Only the owner changes permissions or publishes.

        With another ``domain`` than ``pithos``, ``meta`` changes the
        object's attributes in that domain instead (a replacement replaces
        all of them; see ``validation.check_attributes``); the returned
        info's ``meta`` stays the ``pithos`` one."""
        check_path(account, container, name)
        perms = checked_permissions(permissions) if permissions is not None else None
        info: ObjectInfo = await self._runner.run(
            "pithos.update_object", writes.update_object_txn, self.block_size,
            self.public_token_length, user, account, container, name,
            dict(meta) if meta is not None else None, replace, perms, public,
            self.clock.seconds(), domain, content_type, expect={},
            label=f"{account}/{container}/{name}")
        return info

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
        destination's new version.  Only the owner copies a ``version``
        other than the latest (``Forbidden``).

        With ``delimiter`` the source object itself may be absent (a
        virtual directory); objects under it the caller may not read (or
        move) are skipped; a destination the caller may not write makes
        the whole call ``Forbidden`` (nothing is written).  ``permissions``/``public`` apply to the
        destination of ``src_name`` only.  A move onto itself keeps the
        uuid and makes a new version."""
        check_path(src_account, src_container, src_name)
        check_new_path(dst_account, dst_container, dst_name)
        perms = checked_permissions(permissions) if permissions is not None else None
        label = f"{dst_account}/{dst_container}/{dst_name}"
        info: ObjectInfo = await self._placed(lambda: self._runner.run(
            "pithos.move_object" if move else "pithos.copy_object", writes.copy_txn,
            self.block_size, self.public_token_length, user, src_account, src_container,
            src_name, dst_account, dst_container, dst_name, move, version, content_type,
            dict(meta) if meta is not None else None, replace_meta, perms, public,
            delimiter or None, self.clock.seconds(), self.policies, label=label))
        return info

    async def delete_object(self, user: str, account: str, container: str, name: str,
                            until: float | None = None,
                            delimiter: str | None = None,
                            expect_serial: int | None = None) -> None:
        """Delete (a deletion-marker version; permissions and public link
        dropped; quota released), or with ``until`` purge history up to it
        (every version of any cluster with an older time; purging the
        current version removes the object), or with ``delimiter`` every
        object under ``<name><delimiter>`` too (those the caller may not
        write are skipped; the object itself may then be absent).

        ``expect_serial`` (a plain delete only): delete only while that is
        the current version, else ``PreconditionFailed`` and nothing
        changes (a conditional delete: ``If-Match``)."""
        check_path(account, container, name)
        if expect_serial is not None and (until is not None or delimiter):
            raise errors.BadRequest("A conditional delete removes one object.")
        await self._runner.run("pithos.delete_object", writes.delete_object_txn, user,
                               account, container, name, until, delimiter or None,
                               self.clock.seconds(), expect_serial,
                               label=f"{account}/{container}/{name}")

    async def public_object(self, token: str) -> ObjectInfo:
        """The latest version of the object behind a public link (no
        caller); ``NotFound`` for an unknown or withdrawn token."""
        if not token or "\x00" in token or len(token) > 256:
            raise errors.NotFound("No such public object.")
        info: ObjectInfo = await self.db.run("pithos.public_object", reads.public_txn,
                                             self.block_size, token)
        return info

    async def set_checksum(self, serial: int, checksum: str) -> None:
        """Record the MD5 of a version computed after it was created (a
        hashmap upload or a partial update).  A version gone meanwhile is
        ignored."""
        await self.db.run("pithos.set_checksum", store.set_checksum_txn, serial, checksum)

    # -- expiring objects -----------------------------------------------------

    async def expiring(self, now: float, after: tuple[str, int] | None = None,
                       since: float | None = None, limit: int = 1000,
                       container: tuple[str, str] | None = None,
                       ) -> list[tuple[str, str, str, int, tuple[str, int]]]:
        """Current objects whose ``X-Delete-At`` has come by ``now`` (and
        was after ``since``, if given; in ``container``, an ``(account,
        container)``, if given): ``(account, container, name, serial,
        cursor)`` in time order, strictly after ``after`` (the ``cursor``
        of a previous page's last entry).  For the leader's sweep
        (``snfd.pithos.expiry``)."""
        under = None if container is None else f"{container[0]}/{container[1]}/"
        rows = await self.db.run(
            "pithos.expiring", store.expiring_txn, f"{int(now):010d}", after,
            None if since is None else f"{max(0, int(since)):010d}", limit, under)
        out = []
        for path, serial, delete_at in rows:
            account, cont, name = path.split("/", 2)
            out.append((account, cont, name, serial, (delete_at, serial)))
        return out

    async def expire_object(self, account: str, container: str, name: str,
                            serial: int) -> bool:
        """Delete an expired object as its owner would (a deletion
        marker; quota released), unless its current version is no longer
        ``serial`` (changed since it was found); whether it was deleted."""
        deleted: bool = await self._runner.run(
            "pithos.expire_object", writes.expire_object_txn, account, container, name,
            serial, self.clock.seconds(), label=f"{account}/{container}/{name}")
        return deleted

    # -- garbage collection ---------------------------------------------------

    async def collect_garbage(self, grace: float, batch: int = 1000,
                              cutoff: float | None = None) -> tuple[int, int]:
        """Remove blocks no version references, sparing any stored or
        refreshed within ``grace`` seconds (at or after ``cutoff`` when it
        is given: see ``snfd.clock.AgeCutoffs``), safely against concurrent
        uploads (see ``snfd.pithos.gc``).  Returns ``(blocks scanned,
        removed)``.  Run by one node at a time (a leader duty).

        Each storage policy's store is collected in turn: policy 0's
        (the node's ``IBlockStore``) keeps every block any version
        references, another's only those its own containers' versions
        reference.  Blocks the holders registered with ``references``
        report (volume maps: they live in policy 0's store) are spared;
        when a holder fails, nothing is removed."""
        held = await self.references.referenced()
        if held is None:
            return 0, 0
        scanned = removed = 0
        if cutoff is None:
            cutoff = self.clock.seconds() - grace
        for policy in self.policies:
            only = None if policy is self.policies.primary else policy.names
            keep = held if policy is self.policies.primary else frozenset()
            s, r = await collect_garbage(self.db, policy.blocks, cutoff, batch, only, keep)
            scanned += s
            removed += r
        return scanned, removed


__all__ = ["ANONYMOUS", "KEEP", "MAX_UNREFERENCED", "Backend", "MissingBlocks", "Subdir"]
