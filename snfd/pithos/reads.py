"""The read transactions of the storage backend: sharers, accounts,
containers, object listings, objects, versions and public links, each as
the caller may see it (``snfd.pithos.permissions``).

Each function is one database transaction (``db.run``) that reads
through ``snfd.pithos.store``; the ``Backend`` façade checks the
arguments and names the transaction.  ``block_size`` is the block store's,
for the ``ObjectInfo`` values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from snfd import errors
from snfd.pithos import store
from snfd.pithos.model import (
    AccountInfo,
    ContainerInfo,
    ContainerPolicy,
    ContainerSettings,
    ObjectInfo,
    Permissions,
    Sharer,
    Subdir,
    VersionEntry,
)
from snfd.pithos.permissions import (
    ANONYMOUS,
    PAST_VERSIONS,
    PUBLIC,
    Access,
    access_txn,
    anonymous_visibility_txn,
    denied,
    directories_txn,
    entries_txn,
    everything,
    grants,
    owner_access,
    require,
    shares_under_txn,
    sharing_paths,
    visibility_txn,
)
from snfd.pithos.rules import MAX_LIST
from snfd.pithos.store import DELETED, HISTORY, NORMAL, MetaFilter, Version
from snfd.pithos.validation import OBJECT_META_PREFIX


def container_policy(policy: Mapping[str, str], account: str) -> ContainerPolicy:
    """A container's stored policy keys with their defaults filled in."""
    return ContainerPolicy(quota=int(policy.get("quota") or 0),
                           versioning=policy.get("versioning") or "auto",
                           project=policy.get("project") or account,
                           storage=policy.get(store.STORAGE_POLICY) or "")


def upload_room_txn(txn: Any, account: str, container: str,
                    name: str) -> tuple[int | None, str, int]:
    """``(container room, project, current size)`` for a new version of
    ``name``: the bytes the container quota leaves for it (``None``:
    unlimited, or no such container), the project it is charged to and
    the size of the version it would replace (0 for none)."""
    cpath = f"{account}/{container}"
    node = store.node_txn(txn, cpath)
    if node is None:
        return None, account, 0
    policy = container_policy(store.policy_txn(txn, node), account)
    latest = store.latest_txn(txn, f"{cpath}/{name}")
    current = latest.size if latest is not None and latest.cluster == NORMAL else 0
    if not policy.quota:
        return None, policy.project, current
    used = store.stats_txn(txn, node).get(NORMAL, store.Stats()).size
    return policy.quota - used + current, policy.project, current


def with_diskspace(room: int | None, diskspace: int | None, current: int) -> int | None:
    """The container ``room`` of ``upload_room_txn`` bounded by the
    ``diskspace`` the quota leaves too (``None``: no bound), counting the
    ``current`` version's bytes that a new one frees."""
    if diskspace is None:
        return room
    return diskspace + current if room is None else min(room, diskspace + current)


def upload_limits_txn(txn: Any, user: str, account: str, container: str, name: str,
                      left: Callable[[Any, str, str], int | None],
                      unbounded: int) -> tuple[int | None, int, int]:
    """``Backend.upload_limits`` in one transaction: ``left(txn, account,
    project)`` reads what the quota holder leaves (``None``: no bound);
    ``unbounded`` bounds uploads without one."""
    room, project, current = upload_room_txn(txn, account, container, name)
    room = with_diskspace(room, left(txn, account, project), current)
    pending = store.uploads_size_txn(txn, user)
    bound = unbounded
    if pending:
        own = left(txn, user, user)
        bound = unbounded if own is None else own
    return room, pending, bound


def sharers_txn(txn: Any, user: str, marker: str | None, limit: int) -> list[Sharer]:
    """See ``Backend.sharers``."""
    entries = sorted(entries_txn(txn, user))
    return [Sharer(name, mtime)
            for name, mtime in store.sharers_txn(txn, user, entries, marker, limit)]


# -- accounts and containers --------------------------------------------------

def account_txn(txn: Any, user: str, account: str, until: float | None) -> AccountInfo:
    """See ``Backend.account`` (without the quotas)."""
    node = store.node_txn(txn, account)
    if user != account:
        access = access_txn(txn, user, account, None, None)
        if not access.read and not shares_under_txn(txn, user, account + "/"):
            raise denied(user == ANONYMOUS)
        if until is not None:
            raise errors.Forbidden("Only the owner may look at an account's past.")
        mtime = store.account_totals_txn(txn, node)[2] if node is not None else 0.0
        return AccountInfo(account, 0, 0, mtime)
    groups = store.groups_txn(txn, account)
    sharing = store.permissions_txn(txn, [account]).get(account)
    if node is None:
        return AccountInfo(account, 0, 0, 0.0, until=until, groups=groups, sharing=sharing)
    count, size, mtime, objects = store.account_totals_txn(txn, node)
    if until is not None:
        count, size, mtime, objects = 0, 0, 0.0, 0
        for row in store.container_rows_txn(txn, node, limit=1_000_000):
            stats = store.stats_as_of_txn(txn, row.node, until)
            count += 1
            size += stats.size
            objects += stats.population
            mtime = max(mtime, stats.mtime)
    return AccountInfo(account, count, size, mtime, until=until, objects=objects,
                       meta=store.node_meta_txn(txn, node), groups=groups, sharing=sharing,
                       storage={} if until is not None else store.storage_totals_txn(txn, node))


def containers_txn(txn: Any, user: str, account: str, marker: str | None,
                   end_marker: str | None, prefix: str, limit: int, reverse: bool,
                   shared: bool, public: bool, until: float | None) -> list[ContainerInfo]:
    """See ``Backend.containers``."""
    owner = user == account
    node = store.node_txn(txn, account)
    base = account + "/"
    only: set[str] | None = None
    whole: set[str] | None = None  # non-owner: containers readable whole
    if not owner:
        access = access_txn(txn, user, account, None, None)
        entries = entries_txn(txn, user)
        granted = store.permissions_under_txn(txn, base, sorted(entries))
        names = {p[len(base):].split("/", 1)[0] for p in granted}
        if not access.read and not names:
            raise denied(user == ANONYMOUS)
        if public:
            raise errors.Forbidden("Only the owner may list public objects.")
        if until is not None:
            raise errors.Forbidden("Only the owner may look at an account's past.")
        if access.read:
            whole = None  # everything
        else:
            whole = {p[len(base):] for p, perms in granted.items()
                     if "/" not in p[len(base):] and grants(perms, entries) is not None}
            only = names
    elif shared:
        only = {p[len(base):].split("/", 1)[0]
                for p in store.permissions_under_txn(txn, base)}
    if owner and public:
        names = set(store.public_containers_txn(txn, account))
        only = names if only is None else only & names
    if node is None or limit == 0:
        return []
    lo = base + prefix
    after, before = (base + marker) if marker else None, (
        base + end_marker) if end_marker else None
    if reverse:
        after, before = before, after
    rows = store.container_rows_txn(
        txn, node, lo=lo, hi=store.successor(lo), after=after, before=before,
        reverse=reverse, limit=limit,
        only=None if only is None else sorted(base + n for n in only))
    policies = store.policies_txn(txn, [r.node for r in rows])
    out = []
    for row in rows:
        stats = row.stats
        if until is not None:
            stats = store.stats_as_of_txn(txn, row.node, until)
        if owner:
            out.append(ContainerInfo(account, row.name, stats.population, stats.size,
                                     stats.mtime,
                                     policy=container_policy(policies[row.node], account),
                                     until=until))
        elif whole is None or row.name in whole:
            out.append(ContainerInfo(account, row.name, stats.population, stats.size,
                                     stats.mtime))
        else:
            out.append(ContainerInfo(account, row.name, 0, 0, stats.mtime))
    return out


def owned_container_txn(txn: Any, account: str, container: str) -> ContainerInfo:
    """``container_txn`` for the owner without ``until``: one statement."""
    found = store.owned_container_txn(txn, f"{account}/{container}")
    if found is None:
        raise errors.NotFound("Container does not exist.")
    return ContainerInfo(
        account, container, found.stats.population, found.stats.size,
        found.stats.mtime, policy=container_policy(found.policy, account),
        meta=found.meta,
        object_meta=tuple(k[len(OBJECT_META_PREFIX):] for k in found.meta_keys),
        sharing=found.sharing)


def container_settings_txn(txn: Any, account: str,
                           container: str) -> ContainerSettings | None:
    """See ``Backend.container_settings`` (read without the cache): one
    statement, ``None`` for no such container."""
    found = store.container_settings_txn(txn, f"{account}/{container}")
    if found is None:
        return None
    node, policy, meta, sharing = found
    return ContainerSettings(account, container, node, container_policy(policy, account),
                             meta, sharing)


def container_txn(txn: Any, user: str, account: str, container: str,
                  until: float | None) -> ContainerInfo:
    """See ``Backend.container`` (the owner's view of now is
    ``owned_container_txn``)."""
    path = f"{account}/{container}"
    access = access_txn(txn, user, account, container, None)
    if not access.owner:
        if not access.read and not shares_under_txn(txn, user, path + "/"):
            raise denied(user == ANONYMOUS)
        if until is not None:
            raise errors.Forbidden("Only the owner may look at a container's past.")
    node = store.node_txn(txn, path)
    if node is None:
        raise errors.NotFound("Container does not exist.")
    if until is not None:
        stats = store.stats_as_of_txn(txn, node, until)
    else:
        stats = store.stats_txn(txn, node).get(NORMAL, store.Stats())
    if not access.owner:
        # Everyone who sees a container sees its storage policy (Swift).
        storage = ContainerPolicy(
            storage=store.policy_txn(txn, node).get(store.STORAGE_POLICY) or "")
        if access.read:
            return ContainerInfo(account, container, stats.population, stats.size,
                                 stats.mtime, policy=storage)
        return ContainerInfo(account, container, 0, 0, stats.mtime, policy=storage)
    keys = tuple(k[len(OBJECT_META_PREFIX):] for k in store.meta_keys_txn(txn, node))
    return ContainerInfo(
        account, container, stats.population, stats.size, stats.mtime,
        policy=container_policy(store.policy_txn(txn, node), account), until=until,
        meta=store.node_meta_txn(txn, node), object_meta=keys,
        sharing=store.permissions_txn(txn, [path]).get(path))


# -- object listings ----------------------------------------------------------

def objects_txn(txn: Any, block_size: int, user: str, account: str, container: str,
                prefix: str, delimiter: str | None, marker: str | None,
                end_marker: str | None, limit: int, reverse: bool, path_mode: bool,
                filters: list[MetaFilter], shared: bool, public: bool,
                until: float | None, now: float | None = None) -> list[ObjectInfo | Subdir]:
    """See ``Backend.objects`` (``prefix`` and ``delimiter`` already
    adjusted for ``path_mode``); ``now``: leave out the objects expired
    by then (``snfd.pithos.expiry``)."""
    owner = user == account
    anonymous = user == ANONYMOUS
    cpath = f"{account}/{container}"
    base = cpath + "/"
    exact: list[str] | None = None
    prefixes: list[str] = []
    visible: Callable[[str], Access] = everything
    public_only = owner and public
    if anonymous:
        if public or until is not None:
            raise errors.Forbidden("Only the owner may list public objects or the past.")
        # A container readable by all lists what it lets ``ANONYMOUS``
        # read; any other only its public objects.
        by_all = anonymous_visibility_txn(txn, account, container)
        if by_all is None:
            visible, public_only = (lambda path: PUBLIC), True
        else:
            visible = by_all
    elif not owner:
        visible, exact, prefixes = visibility_txn(txn, user, account, container)
        if public:
            raise errors.Forbidden("Only the owner may list public objects.")
        if until is not None:
            raise errors.Forbidden("Only the owner may look at a container's past.")
    node = store.node_txn(txn, cpath)
    if node is None:
        raise errors.NotFound("Container does not exist.")
    if owner and shared:
        perms = store.permissions_under_txn(txn, base)
        dirs = directories_txn(txn, list(perms))
        exact = sorted(perms)
        prefixes = sorted(p + "/" for p in dirs)
    if limit == 0:
        return []

    lo = base + prefix
    hi = store.successor(lo)
    after = base + marker if marker else None
    before = base + end_marker if end_marker else None
    if reverse:
        after, before = before, after
    found: list[tuple[str, Version, Access] | str] = []
    group: str | None = None    # names under this subdir are skipped
    pending: str | None = None  # reverse: a subdir waiting for its object
    dlen = len(delimiter or "")
    while len(found) < limit:
        batch = min(max(2 * (limit - len(found)), 100), MAX_LIST)
        rows = store.object_rows_txn(
            txn, node, lo=lo, hi=hi, after=after, before=before, reverse=reverse,
            limit=batch, until=until, filters=filters, exact=exact, prefixes=prefixes,
            public_only=public_only,
            expired_at=None if until is not None or now is None else f"{int(now):010d}")
        for path, version in rows:
            if reverse:
                before = path
            else:
                after = path
            name = path[len(base):]
            if path_mode and name == prefix:
                continue  # Swift leaves the directory object itself out
            if group is not None:
                if name.startswith(group) and name != group:
                    continue
                group = None
            access = visible(path)
            if pending is not None:
                if name == pending and access.read:
                    pending = None
                else:
                    if not path_mode and pending != marker:
                        found.append(pending)
                    pending = None
                    if len(found) >= limit:
                        break
            if not access.read:
                continue
            if delimiter is not None:
                idx = name.find(delimiter, len(prefix))
                if idx >= 0:
                    sub = name[:idx + dlen]
                    group = sub
                    if sub != name:
                        if reverse:
                            pending = sub
                        elif not path_mode and sub != marker:
                            # A page ending at a subdir continues from it.
                            found.append(sub)
                            if len(found) >= limit:
                                break
                        continue
            found.append((path, version, access))
            if len(found) >= limit:
                break
        if len(found) >= limit or len(rows) < batch:
            break
        if group is not None:
            if reverse:
                edge = base + group + "\x01"
                before = edge if before is None or edge < before else before
            else:
                nxt = store.successor(base + group)
                if nxt is None:
                    break
                lo = nxt if nxt > lo else lo
    if pending is not None and len(found) < limit and not path_mode and pending != marker:
        found.append(pending)
    return _listing_txn(txn, block_size, account, container, found, owner, until)


def _listing_txn(txn: Any, block_size: int, account: str, container: str,
                 found: list[tuple[str, Version, Access] | str], owner: bool,
                 until: float | None) -> list[ObjectInfo | Subdir]:
    base = f"{account}/{container}/"
    paths = [item[0] for item in found if not isinstance(item, str)]
    perms: dict[str, Permissions] = {}
    tokens: dict[str, str] = {}
    if owner and paths:
        if until is None:
            perms = store.permissions_txn(txn, paths)
        tokens = store.public_tokens_txn(txn, paths)
    out: list[ObjectInfo | Subdir] = []
    for item in found:
        if isinstance(item, str):
            out.append(Subdir(item))
            continue
        path, v, access = item
        out.append(ObjectInfo(
            account, container, path[len(base):], v.serial, v.uuid, v.hash, v.checksum,
            v.size, v.type, v.mtime, v.muser, block_size=block_size,
            sharing=perms.get(path), allowed_to=access.allowed_to,
            public=tokens.get(path)))
    return out


# -- objects ------------------------------------------------------------------

def object_txn(txn: Any, block_size: int, user: str, account: str, container: str,
               name: str, version: int | None, project: str | None = None) -> ObjectInfo:
    """See ``Backend.object`` (for the owner, ``owned_object_txn`` gives
    the same in one statement)."""
    access = access_txn(txn, user, account, container, name, project=project)
    require(access, "Object")
    path = f"{account}/{container}/{name}"
    latest = store.latest_txn(txn, path)
    if latest is None:
        raise errors.NotFound("Object does not exist.")
    if version is None:
        if latest.cluster != NORMAL:
            raise errors.NotFound("Object does not exist.")
        v = latest
    else:
        if not access.owner and (version != latest.serial or latest.cluster != NORMAL):
            raise errors.Forbidden(PAST_VERSIONS)
        found = store.version_txn(txn, version)
        if found is None or found.node != latest.node:
            raise errors.NotFound(f"Object has no version {version}.")
        v = found
    meta = store.attributes_txn(txn, v.serial)
    hashes = [] if v.cluster == DELETED else store.map_hashes_txn(txn, v.map_id)
    return object_info_txn(txn, block_size, access, account, container, name, v, meta,
                           hashes, latest=v.serial == latest.serial and v.cluster == NORMAL)


def owned_object_txn(txn: Any, block_size: int, account: str, container: str, name: str,
                     version: int | None) -> ObjectInfo:
    """``object_txn`` for the owner, in one statement
    (``store.object_view_txn``)."""
    path = f"{account}/{container}/{name}"
    paths, ancestors = sharing_paths(account, container, name)
    view = store.object_view_txn(txn, path, version, paths, ancestors)
    latest, v = view.latest, view.chosen
    if latest is None:
        raise errors.NotFound("Object does not exist.")
    if version is None:
        if latest.cluster != NORMAL:
            raise errors.NotFound("Object does not exist.")
    elif v is None or v.node != latest.node:
        raise errors.NotFound(f"Object has no version {version}.")
    assert v is not None
    access = owner_access(account, container, name, view.sharing, view.types)
    is_latest = v.serial == latest.serial and v.cluster == NORMAL
    return _object_info(block_size, access, account, container, name, v, view.meta,
                        [] if v.cluster == DELETED else view.hashes, is_latest,
                        view.public if is_latest else None)


def object_info_txn(txn: Any, block_size: int, access: Access, account: str,
                    container: str, name: str, v: Version, meta: dict[str, str],
                    hashes: list[str] | None, latest: bool = True) -> ObjectInfo:
    """The ``ObjectInfo`` of version ``v`` as the caller with ``access``
    sees it; the sharing details only when it is the ``latest``."""
    path = f"{account}/{container}/{name}"
    public = None
    if latest and access.owner:
        public = store.public_tokens_txn(txn, [path]).get(path)
    return _object_info(block_size, access, account, container, name, v, meta, hashes,
                        latest, public)


def _object_info(block_size: int, access: Access, account: str, container: str,
                 name: str, v: Version, meta: dict[str, str], hashes: list[str] | None,
                 latest: bool, public: str | None) -> ObjectInfo:
    """``object_info_txn`` given the object's active public link."""
    sharing = shared_by = None
    path = f"{account}/{container}/{name}"
    if latest and access.object_level:
        if access.path != path:
            shared_by = access.path
        if access.owner:
            sharing = access.permissions
    return ObjectInfo(account, container, name, v.serial, v.uuid, v.hash, v.checksum,
                      v.size, v.type, v.mtime, v.muser, meta=meta, hashes=hashes,
                      block_size=block_size, sharing=sharing, shared_by=shared_by,
                      allowed_to=access.allowed_to if latest else None, public=public,
                      deleted=v.cluster == DELETED)


def versions_txn(txn: Any, user: str, account: str, container: str,
                 name: str) -> list[tuple[int, float]]:
    """See ``Backend.versions``."""
    access = access_txn(txn, user, account, container, name)
    require(access, "Object")
    if not access.owner:
        raise errors.Forbidden(PAST_VERSIONS)
    node = store.node_txn(txn, f"{account}/{container}/{name}")
    if node is None:
        raise errors.NotFound("Object does not exist.")
    return store.versions_txn(txn, node)


def history_txn(txn: Any, block_size: int, user: str, account: str, container: str,
                prefix: str, after: tuple[str, int] | None,
                limit: int) -> list[VersionEntry]:
    """See ``Backend.history``."""
    cpath = f"{account}/{container}"
    access = access_txn(txn, user, account, container, None)
    if not access.owner:
        # As ``until`` on a listing: who may see the container is told it
        # is the owner's, anyone else is denied as for any listing.
        if not access.read and not shares_under_txn(txn, user, cpath + "/"):
            raise denied(user == ANONYMOUS)
        raise errors.Forbidden(PAST_VERSIONS)
    node = store.node_txn(txn, cpath)
    if node is None:
        raise errors.NotFound("Container does not exist.")
    if limit == 0:
        return []
    base = cpath + "/"
    lo = base + prefix
    rows = store.history_rows_txn(
        txn, node, lo=lo, hi=store.successor(lo),
        after=None if after is None else (base + after[0], after[1]), limit=limit)
    return [VersionEntry(ObjectInfo(account, container, path[len(base):], v.serial, v.uuid,
                                    v.hash, v.checksum, v.size, v.type, v.mtime, v.muser,
                                    block_size=block_size, deleted=v.cluster == DELETED),
                         newest and v.cluster != HISTORY)
            for path, v, newest in rows]


def public_txn(txn: Any, block_size: int, token: str) -> ObjectInfo:
    """See ``Backend.public_object``."""
    path = store.public_path_txn(txn, token)
    v = store.latest_txn(txn, path) if path is not None else None
    if path is None or v is None or v.cluster != NORMAL:
        raise errors.NotFound("No such public object.")
    account, container, name = path.split("/", 2)
    return ObjectInfo(account, container, name, v.serial, v.uuid, v.hash, v.checksum,
                      v.size, v.type, v.mtime, v.muser,
                      meta=store.attributes_txn(txn, v.serial),
                      hashes=store.map_hashes_txn(txn, v.map_id),
                      block_size=block_size, public=token)


__all__ = ["account_txn", "container_policy", "container_settings_txn", "container_txn",
           "containers_txn",
           "history_txn", "object_info_txn", "object_txn", "objects_txn", "public_txn",
           "sharers_txn", "versions_txn"]
