"""The write transactions of the storage backend: accounts, containers,
objects (put, update, copy, move, delete, purge) and the steps they share
(a new version, retiring the previous one, sharing and public links).

Each function is one database transaction.  A write locks its container
row (``FOR UPDATE``) first; a write of one object (a PUT, a plain
DELETE) locks it ``FOR SHARE`` and the object's path with an advisory
lock (``lock_object_txn``), so writes of different objects in a container
run side by side: what they share (statistics, meta-key counts, the
container quota, the quota holdings) moves by deltas under row locks.
It checks the caller with
``snfd.pithos.permissions``, and adds what it charges to its
``WriteCharge`` (``snfd.pithos.charges``), the argument after ``txn``: it
calls ``ctx.begin()`` first and ``ctx.finish(txn)`` last.  A write that
makes a version reference blocks takes the collector's lock shared and
checks its blocks (``snfd.pithos.gc``).  Every change creates a new
version (metadata changes, deletes too) and keeps the statistics of the
object's container and account exact.
"""

from __future__ import annotations

import secrets
import string
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from snfd import errors
from snfd.pithos import store
from snfd.pithos.charges import WriteCharge
from snfd.pithos.gc import check_blocks_txn
from snfd.pithos.hashmap import EMPTY_HASH, merkle
from snfd.pithos.model import ObjectInfo, Permissions
from snfd.pithos.permissions import PAST_VERSIONS, access_txn, owner_only_txn, require
from snfd.pithos.reads import object_info_txn
from snfd.pithos.rules import MAX_GROUPS, MAX_LIST
from snfd.pithos.store import DELETED, HISTORY, NORMAL, Version
from snfd.pithos.validation import (
    USER_META,
    check_attributes,
    check_meta,
    check_new_object_name,
    is_user_meta,
    merged_meta,
    replaceable,
)

TOKEN_ALPHABET = string.digits + string.ascii_letters
TOKEN_LENGTH = 16


@attrs.frozen
class Container:
    """A container locked by the transaction, with its stored policy."""

    node: int
    account: str
    name: str
    policy: dict[str, str]

    @property
    def path(self) -> str:
        return f"{self.account}/{self.name}"

    @property
    def project(self) -> str:
        return self.policy.get("project") or self.account

    @property
    def quota(self) -> int:
        return int(self.policy.get("quota") or 0)

    @property
    def versioning(self) -> str:
        return self.policy.get("versioning") or "auto"


# -- accounts and containers --------------------------------------------------

def update_account_txn(txn: Any, account: str, meta: dict[str, str] | None, replace: bool,
                       groups: dict[str, tuple[str, ...]] | None, perms: Permissions | None,
                       now: float) -> None:
    """See ``Backend.update_account`` (the owner is checked already;
    nothing is charged)."""
    node = store.ensure_account_txn(txn, account, now)
    if meta is not None:
        new = merged_meta(store.node_meta_txn(txn, node), meta, replace)
        check_meta(new, "X-Account-Meta-")
        store.set_node_meta_txn(txn, node, new)
    if groups is not None:
        current = dict(store.groups_txn(txn, account))
        if replace:
            current = {}
        for name, members in groups.items():
            if members:
                current[name] = members
            else:
                current.pop(name, None)
        if len(current) > MAX_GROUPS:
            raise errors.BadRequest(
                f"Too many groups ({len(current)}; at most {MAX_GROUPS}).")
        store.set_groups_txn(txn, account, current)
    if perms is not None:
        store.set_permissions_txn(txn, account, perms)
    store.add_stats_txn(txn, node, {}, now)


def put_container_txn(txn: Any, ctx: WriteCharge, account: str, container: str,
                      policy: dict[str, str | None], meta: dict[str, str],
                      now: float, storage: str | None = None,
                      policies: Any = None) -> bool:
    """See ``Backend.put_container`` (the owner is checked already).
    ``storage``: the storage policy asked for (``None``: the default of
    ``policies``, the node's ``StoragePolicies``); an existing container
    in another one is a ``Conflict``."""
    ctx.begin()
    anode = store.ensure_account_txn(txn, account, now)
    path = f"{account}/{container}"
    node = store.create_node_txn(txn, anode, path)
    if node is None and storage is not None and policies is not None:
        existing = store.node_txn(txn, path, "update")
        current = store.policy_txn(txn, existing).get(store.STORAGE_POLICY) if existing else None
        if policies.of(current).name != storage:
            raise errors.Conflict("The container exists with another storage policy.")
    if node is None:
        _update_container_locked_txn(txn, ctx, account, container, meta, False, policy,
                                     None, now)
        ctx.finish(txn)
        return False
    store.add_stats_txn(txn, node, {}, now)
    stored = {k: v for k, v in policy.items() if v is not None}
    if policies is not None:
        stored[store.STORAGE_POLICY] = storage or policies.default.name
    store.set_policy_txn(txn, node, stored)
    store.set_node_meta_txn(txn, node, {k: v for k, v in meta.items() if v != ""})
    store.add_stats_txn(txn, anode, {}, now)
    ctx.projects[path] = policy.get("project") or account
    ctx.finish(txn)
    return True


def update_container_txn(txn: Any, ctx: WriteCharge, user: str, account: str,
                         container: str, meta: dict[str, str] | None, replace: bool,
                         policy: dict[str, str | None] | None, perms: Permissions | None,
                         now: float) -> None:
    """See ``Backend.update_container``."""
    ctx.begin()
    owner_only_txn(txn, user, account, container)
    _update_container_locked_txn(txn, ctx, account, container, meta, replace, policy, perms,
                                 now)
    ctx.finish(txn)


def _update_container_locked_txn(txn: Any, ctx: WriteCharge, account: str, container: str,
                                 meta: dict[str, str] | None, replace: bool,
                                 policy: dict[str, str | None] | None,
                                 perms: Permissions | None, now: float) -> None:
    c = lock_container_txn(txn, account, container)
    if meta is not None:
        # A replacement replaces the user metadata only: keys a Swift
        # feature keeps beside them (X-Versions-Location) stay.
        new = merged_meta(store.node_meta_txn(txn, c.node), meta, replace,
                          lambda key: key.lower().startswith("x-container-meta-"))
        check_meta(new, "X-Container-Meta-")
        store.set_node_meta_txn(txn, c.node, new)
    project = c.project
    if policy:
        if "project" in policy:
            project = policy["project"] or account
            if project != c.project:
                size = store.stats_txn(txn, c.node).get(NORMAL, store.Stats()).size
                ctx.charge(account, c.project, -size)
                ctx.charge(account, project, size)
        store.set_policy_txn(txn, c.node, policy)
    if perms is not None:
        store.set_permissions_txn(txn, c.path, perms)
    store.add_stats_txn(txn, c.node, {}, now)
    ctx.projects[c.path] = project


def delete_container_txn(txn: Any, ctx: WriteCharge, user: str, account: str,
                         container: str, until: float | None, delimiter: str | None,
                         now: float) -> None:
    """See ``Backend.delete_container``."""
    ctx.begin()
    owner_only_txn(txn, user, account, container)
    c = lock_container_txn(txn, account, container)
    if until is not None:
        purge_txn(txn, ctx, c, store.purgeable_txn(
            txn, parent=c.node, until=until, clusters=(HISTORY, DELETED)))
        ctx.finish(txn)
        return
    stats = store.stats_txn(txn, c.node).get(NORMAL, store.Stats())
    if delimiter is None:
        if stats.population > 0:
            raise errors.Conflict(
                "There was a conflict when trying to complete your request.")
    else:
        ctx.charge(account, c.project, -stats.size)
    store.delete_container_txn(txn, c.node, c.path)
    anode = store.node_txn(txn, account)
    if anode is not None:
        store.add_stats_txn(txn, anode, {}, now)
    ctx.finish(txn)


# -- objects ------------------------------------------------------------------

def put_object_txn(txn: Any, ctx: WriteCharge, blocks: Any, block_size: int,
                   token_length: int, user: str, account: str, container: str, name: str,
                   size: int, hashes: list[str], content_type: str, checksum: str,
                   meta: dict[str, str] | None, perms: Permissions | None,
                   public: bool | None, expect_serial: int | None, if_none_match: bool,
                   by_hash: bool, now: float) -> ObjectInfo:
    """See ``Backend.put_object``; ``blocks`` is the block store, or the
    node's ``StoragePolicies`` (then the container's store): its blocks
    are checked again inside the transaction."""
    ctx.begin()
    store.gc_share_txn(txn)
    # The writer's records of blocks it uploaded (by POST, or in an upload
    # that failed) go: from now on a version references them.
    store.forget_uploads_txn(txn, user, hashes)
    c = lock_object_txn(txn, account, container, name)
    check_blocks_txn(txn, blocks_of(blocks, c), hashes)
    access = access_txn(txn, user, account, container, name, detail=False)
    require(access, "Object", write=True)
    if (perms is not None or public is not None) and not access.owner:
        raise errors.Forbidden("Only the owner may change sharing or publish.")
    path = f"{c.path}/{name}"
    prev = store.latest_txn(txn, path)
    current = prev if prev is not None and prev.cluster == NORMAL else None
    if if_none_match and current is not None:
        raise errors.PreconditionFailed("The object exists.")
    if expect_serial is not None and (current is None or current.serial != expect_serial):
        raise errors.Conflict("The object changed meanwhile.")
    old_meta = store.attributes_txn(txn, current.serial) if current is not None else {}
    new_meta = old_meta if meta is None else meta
    map_id = store.insert_map_txn(txn, hashes)
    version = new_version_txn(
        txn, ctx, c, path, None if prev is None else prev.node, current, old_meta,
        hash=merkle(hashes), size=size, type=content_type, source=None, muser=user,
        uuid=current.uuid if current is not None else str(uuidlib.uuid4()),
        checksum=checksum, map_id=map_id, meta=new_meta, mtime=now)
    token = sharing_txn(txn, path, perms, public, token_length)
    ctx.finish(txn)
    return ObjectInfo(account, container, name, version.serial, version.uuid,
                      version.hash, version.checksum, version.size, version.type,
                      version.mtime, version.muser, meta=dict(new_meta), hashes=hashes,
                      block_size=block_size, sharing=perms or None,
                      allowed_to=access.allowed_to, public=token)


def update_object_txn(txn: Any, ctx: WriteCharge, block_size: int, token_length: int,
                      user: str, account: str, container: str, name: str,
                      meta: dict[str, str] | None, replace: bool, perms: Permissions | None,
                      public: bool | None, now: float, domain: str,
                      content_type: str | None = None) -> ObjectInfo:
    """See ``Backend.update_object``."""
    ctx.begin()
    if meta is not None:
        store.gc_share_txn(txn)
    c = lock_container_txn(txn, account, container)
    access = access_txn(txn, user, account, container, name)
    require(access, "Object", write=True)
    if (perms is not None or public is not None) and not access.owner:
        raise errors.Forbidden("Only the owner may change sharing or publish.")
    path = f"{c.path}/{name}"
    current = store.latest_txn(txn, path)
    if current is None or current.cluster != NORMAL:
        raise errors.NotFound("Object does not exist.")
    old_meta = store.attributes_txn(txn, current.serial)
    new_meta = old_meta
    version = current
    if content_type is not None and content_type != current.type and meta is None:
        meta = {}
        replace = False
    if meta is not None:
        domains = None
        if domain == store.DOMAIN:
            new_meta = merged_meta(old_meta, meta, replace, replaceable, keep_empty=replace)
            check_meta(new_meta, USER_META)
        else:
            old = store.domain_attributes_txn(txn, [current.serial], domain)
            domains = {domain: check_attributes(
                merged_meta(old.get(current.serial, {}), meta, replace))}
        version = new_version_txn(
            txn, ctx, c, path, current.node, current, old_meta, hash=current.hash,
            size=current.size, type=content_type or current.type, source=current.serial,
            muser=user, uuid=current.uuid, checksum=current.checksum,
            map_id=current.map_id, meta=new_meta, mtime=now, domains=domains)
    sharing_txn(txn, path, perms, public, token_length)
    if perms is not None:
        access = access_txn(txn, user, account, container, name)
    hashes = store.map_hashes_txn(txn, version.map_id)
    info = object_info_txn(txn, block_size, access, account, container, name, version,
                           new_meta, hashes)
    ctx.finish(txn)
    return info


def copy_txn(txn: Any, ctx: WriteCharge, block_size: int, token_length: int, user: str,
             src_account: str, src_container: str, src_name: str, dst_account: str,
             dst_container: str, dst_name: str, move: bool, version: int | None,
             content_type: str | None, meta: dict[str, str] | None, replace_meta: bool,
             perms: Permissions | None, public: bool | None, delimiter: str | None,
             now: float, policies: Any = None) -> ObjectInfo:
    """See ``Backend.copy_object``.  ``policies``: the node's
    ``StoragePolicies``; a copy into a container of another storage
    policy checks that the destination's store holds the blocks
    (``MissingBlocks`` naming that store otherwise)."""
    ctx.begin()
    store.gc_share_txn(txn)
    src_c, dst_c = lock_pair_txn(txn, src_account, src_container, dst_account,
                                 dst_container, move)
    src_access = access_txn(txn, user, src_account, src_container, src_name)
    dst_access = access_txn(txn, user, dst_account, dst_container, dst_name)
    src_path = f"{src_c.path}/{src_name}"
    latest = store.latest_txn(txn, src_path)
    source: Version | None = None
    if src_access.read:
        if version is not None and not move:
            if not src_access.owner and (latest is None or version != latest.serial
                                         or latest.cluster != NORMAL):
                raise errors.Forbidden(PAST_VERSIONS)
            found = store.version_txn(txn, version)
            if (found is None or latest is None or found.node != latest.node
                    or found.cluster == DELETED):
                raise errors.NotFound(f"Object has no version {version}.")
            source = found
        elif latest is not None and latest.cluster == NORMAL:
            source = latest
    pairs: list[tuple[str, str, Version]] = []
    if source is not None:
        require(src_access, "Object", write=move)
        pairs.append((src_name, dst_name, source))
    if delimiter:
        under = src_name if src_name.endswith(delimiter) else src_name + delimiter
        for path, child in all_objects_txn(txn, src_c, under):
            child_name = path[len(src_c.path) + 1:]
            if child_name == src_name:
                continue
            if src_access.owner:
                allowed = True
            else:
                a = access_txn(txn, user, src_account, src_container, child_name)
                allowed = a.write if move else a.read
            if not allowed:
                continue
            target = dst_name + child_name[len(src_name):]
            check_new_object_name(target)
            pairs.append((child_name, target, child))
    if not pairs:
        raise errors.NotFound("Object does not exist.")
    require(dst_access, "Object", write=True)
    if not dst_access.owner:
        # Every destination is checked, not only ``dst_name``: the
        # children land on paths of their own, with sharing of their own.
        for _, target, _ in pairs:
            if target != dst_name and not access_txn(txn, user, dst_account, dst_container,
                                                     target).write:
                raise errors.Forbidden(f"No write permission on object {target}.")
    if (perms is not None or public is not None) and not dst_access.owner:
        raise errors.Forbidden("Only the owner may change sharing or publish.")
    if policies is not None and blocks_of(policies, dst_c) is not blocks_of(policies, src_c):
        check_blocks_txn(txn, blocks_of(policies, dst_c), [
            h for _, _, sv in pairs for h in store.map_hashes_txn(txn, sv.map_id)])
    first: tuple[str, Version, dict[str, str]] | None = None
    for sname, dname, sv in pairs:
        smeta = store.attributes_txn(txn, sv.serial)
        new_meta = smeta if meta is None else merged_meta(smeta, meta, replace_meta,
                                                          replaceable, keep_empty=True)
        check_meta(new_meta, USER_META)
        dpath = f"{dst_c.path}/{dname}"
        spath = f"{src_c.path}/{sname}"
        same = dpath == spath
        dprev = store.latest_txn(txn, dpath)
        dcur = dprev if dprev is not None and dprev.cluster == NORMAL else None
        old_meta = store.attributes_txn(txn, dcur.serial) if dcur is not None else {}
        nv = new_version_txn(
            txn, ctx, dst_c, dpath, None if dprev is None else dprev.node, dcur,
            old_meta, hash=sv.hash, size=sv.size, type=content_type or sv.type,
            source=sv.serial, muser=user,
            uuid=sv.uuid if (move or same) else str(uuidlib.uuid4()),
            checksum=sv.checksum, map_id=sv.map_id, meta=new_meta, mtime=now)
        if move and not same:
            scur = store.latest_txn(txn, spath)
            if scur is not None and scur.cluster == NORMAL:
                delete_version_txn(txn, ctx, src_c, spath, scur, user, now)
        if first is None:
            first = (dname, nv, new_meta)
    assert first is not None
    dname, nv, new_meta = first
    if pairs[0][0] == src_name:
        sharing_txn(txn, f"{dst_c.path}/{dname}", perms, public, token_length)
        if perms is not None:
            dst_access = access_txn(txn, user, dst_account, dst_container, dname)
    hashes = store.map_hashes_txn(txn, nv.map_id)
    info = object_info_txn(txn, block_size, dst_access, dst_account, dst_container, dname,
                           nv, new_meta, hashes)
    ctx.finish(txn)
    return info


def delete_object_txn(txn: Any, ctx: WriteCharge, user: str, account: str,
                      container: str, name: str, until: float | None,
                      delimiter: str | None, now: float,
                      expect_serial: int | None = None) -> None:
    """See ``Backend.delete_object``."""
    ctx.begin()
    if until is None and not delimiter:
        c = lock_object_txn(txn, account, container, name)
    else:
        c = lock_container_txn(txn, account, container)
    access = access_txn(txn, user, account, container, name, detail=False)
    path = f"{c.path}/{name}"
    if until is not None:
        require(access, "Object", write=True)
        node = store.node_txn(txn, path)
        if node is None:
            raise errors.NotFound("Object does not exist.")
        purge_txn(txn, ctx, c, store.purgeable_txn(txn, node=node, until=until))
        ctx.finish(txn)
        return
    targets: list[tuple[str, Version]] = []
    current = store.latest_txn(txn, path) if access.read else None
    if current is not None and current.cluster == NORMAL:
        require(access, "Object", write=True)
        targets.append((path, current))
    if expect_serial is not None and (not targets or targets[0][1].serial != expect_serial):
        require(access, "Object", write=True)
        raise errors.PreconditionFailed("The object changed meanwhile.")
    if delimiter:
        under = name if name.endswith(delimiter) else name + delimiter
        for child_path, child in all_objects_txn(txn, c, under):
            if child_path == path:
                continue
            if not access.owner:
                child_name = child_path[len(c.path) + 1:]
                if not access_txn(txn, user, account, container, child_name).write:
                    continue
            targets.append((child_path, child))
    if not targets:
        require(access, "Object")  # 403 whether it exists or not
        raise errors.NotFound("Object does not exist.")
    for target_path, version in targets:
        delete_version_txn(txn, ctx, c, target_path, version, user, now)
    ctx.finish(txn)


def remove_version_txn(txn: Any, ctx: WriteCharge, user: str, account: str,
                       container: str, name: str, serial: int, now: float) -> None:
    """See ``Backend.remove_version``."""
    ctx.begin()
    c = lock_container_txn(txn, account, container)
    access = access_txn(txn, user, account, container, name, detail=False)
    require(access, "Object", write=True)
    path = f"{c.path}/{name}"
    latest = store.latest_txn(txn, path)
    found = store.version_txn(txn, serial)
    if latest is None or found is None or found.node != latest.node:
        raise errors.NotFound(f"Object has no version {serial}.")
    current = latest.serial == serial and latest.cluster == NORMAL
    if not access.owner and not current:
        raise errors.Forbidden(PAST_VERSIONS)
    purge_txn(txn, ctx, c, [found])
    if current:
        # The object is gone as after a delete: its sharing and link too.
        store.forget_paths_txn(txn, [path])
    store.add_stats_txn(txn, c.node, {}, now)
    ctx.finish(txn)


def expire_object_txn(txn: Any, ctx: WriteCharge, account: str, container: str,
                      name: str, serial: int, now: float) -> bool:
    """Delete the object, as its owner, if its current version is still
    ``serial`` (the one found expired); whether it was deleted."""
    ctx.begin()
    try:
        c = lock_container_txn(txn, account, container)
    except errors.NotFound:
        ctx.finish(txn)
        return False
    path = f"{c.path}/{name}"
    current = store.latest_txn(txn, path)
    if current is None or current.serial != serial or current.cluster != NORMAL:
        ctx.finish(txn)
        return False
    delete_version_txn(txn, ctx, c, path, current, account, now)
    ctx.finish(txn)
    return True


# -- shared steps -------------------------------------------------------------

def lock_container_txn(txn: Any, account: str, container: str,
                       lock: str = "update") -> Container:
    """The container, its row locked (``update`` or ``share``);
    ``NotFound`` if there is none."""
    node = store.node_txn(txn, f"{account}/{container}", lock)
    if node is None:
        raise errors.NotFound("Container does not exist.")
    return Container(node, account, container, store.policy_txn(txn, node))


def lock_object_txn(txn: Any, account: str, container: str, name: str) -> Container:
    """The container for a write of the one object ``name`` in it: its row
    share-locked (a change of the whole container, which locks it for
    update, waits for such writes and they for it), and the object's path
    locked until the transaction ends, so two writes of the same object
    run one after the other.  ``NotFound`` if there is no container."""
    c = lock_container_txn(txn, account, container, "share")
    store.lock_path_txn(txn, f"{c.path}/{name}")
    return c


def blocks_of(blocks: Any, c: Container) -> Any:
    """The block store of container ``c``: ``blocks`` itself, or when it
    is the node's ``StoragePolicies``, the store of ``c``'s policy."""
    store_of = getattr(blocks, "store_of", None)
    return store_of(c.policy) if store_of is not None else blocks


def lock_pair_txn(txn: Any, src_account: str, src_container: str, dst_account: str,
                  dst_container: str, move: bool) -> tuple[Container, Container]:
    """Lock two containers in path order (the destination, and a move's
    source, for update; a copy's source for share)."""
    src = (src_account, src_container)
    dst = (dst_account, dst_container)
    if src == dst:
        c = lock_container_txn(txn, *dst)
        return c, c
    locked: dict[tuple[str, str], Container] = {}
    for key in sorted([src, dst], key=lambda k: f"{k[0]}/{k[1]}"):
        mode = "update" if key == dst or move else "share"
        locked[key] = lock_container_txn(txn, *key, lock=mode)
    return locked[src], locked[dst]


def all_objects_txn(txn: Any, c: Container, prefix: str) -> list[tuple[str, Version]]:
    """Every current object of a container under a name prefix."""
    lo = f"{c.path}/{prefix}"
    hi = store.successor(lo)
    out: list[tuple[str, Version]] = []
    after: str | None = None
    while True:
        rows = store.object_rows_txn(txn, c.node, lo=lo, hi=hi, after=after, limit=MAX_LIST)
        out.extend(rows)
        if len(rows) < MAX_LIST:
            return out
        after = rows[-1][0]


def _key_deltas(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, int]:
    before = {k for k in old if is_user_meta(k)}
    after = {k for k in new if is_user_meta(k)}
    deltas = {k: 1 for k in after - before}
    deltas.update({k: -1 for k in before - after})
    return deltas


def new_version_txn(txn: Any, ctx: WriteCharge, c: Container, path: str, node: int | None,
                    current: Version | None, old_meta: Mapping[str, str], *, hash: str,
                    size: int, type: str, source: int | None, muser: str, uuid: str,
                    checksum: str, map_id: int | None, meta: Mapping[str, str],
                    mtime: float,
                    domains: Mapping[str, Mapping[str, str]] | None = None) -> Version:
    """Make a new current version of ``path`` in container ``c``; the
    previous current one (``current``) goes to history or away as the
    container's versioning says; statistics, meta keys, container
    quota and the charge follow.

    The attributes of domains other than ``pithos`` belong to the
    object: the new version takes them from its ``source`` (a copy, a
    move, a metadata change), else from ``current`` (new content),
    except the domains ``domains`` gives anew."""
    if node is None:
        node = store.create_node_txn(txn, c.node, path)
        if node is None:
            node = store.node_txn(txn, path)
            assert node is not None
    carry = source if source is not None else current.serial if current else None
    version = store.insert_version_txn(
        txn, node, hash=hash, size=size, type=type, source=source, mtime=mtime,
        muser=muser, uuid=uuid, checksum=checksum, cluster=NORMAL, map_id=map_id,
        meta=meta, carry=carry, domains=domains)
    before = current.size if current is not None else 0
    changes: dict[int, tuple[int, int]] = {NORMAL: (0 if current else 1, size - before)}
    if current is not None:
        _retire_txn(txn, c, current, changes)
    store.add_stats_txn(txn, c.node, changes, mtime)
    store.adjust_meta_keys_txn(txn, c.node, _key_deltas(old_meta if current else {}, meta))
    if c.quota and size > before:
        used = store.stats_txn(txn, c.node)[NORMAL].size
        if used > c.quota:
            raise errors.OverLimit(
                f"Container quota exceeded ({used} of {c.quota} bytes).")
    ctx.charge(c.account, c.project, size - before)
    ctx.projects[c.path] = c.project
    return version


def _retire_txn(txn: Any, c: Container, old: Version,
                changes: dict[int, tuple[int, int]]) -> None:
    """The version ``old`` is no longer current: to history, or (no
    versioning) removed at once."""
    if c.versioning == "none":
        store.delete_versions_txn(txn, [old])
    else:
        store.recluster_txn(txn, old.serial, HISTORY)
        pop, size = changes.get(HISTORY, (0, 0))
        changes[HISTORY] = (pop + 1, size + old.size)


def delete_version_txn(txn: Any, ctx: WriteCharge, c: Container, path: str,
                       current: Version, muser: str, now: float) -> None:
    """Delete the object whose current version is ``current``."""
    old_meta = store.attributes_txn(txn, current.serial)
    store.insert_version_txn(
        txn, current.node, hash=EMPTY_HASH, size=0, type="", source=current.serial,
        mtime=now, muser=muser, uuid=current.uuid, checksum="", cluster=DELETED,
        map_id=None, meta={})
    changes: dict[int, tuple[int, int]] = {NORMAL: (-1, -current.size), DELETED: (1, 0)}
    _retire_txn(txn, c, current, changes)
    store.add_stats_txn(txn, c.node, changes, now)
    store.adjust_meta_keys_txn(txn, c.node, _key_deltas(old_meta, {}))
    store.forget_paths_txn(txn, [path])
    ctx.charge(c.account, c.project, -current.size)


def purge_txn(txn: Any, ctx: WriteCharge, c: Container,
              versions: Sequence[Version]) -> None:
    """Remove versions for good; a current one leaves its quota."""
    if not versions:
        return
    changes: dict[int, tuple[int, int]] = {}
    for v in versions:
        pop, size = changes.get(v.cluster, (0, 0))
        changes[v.cluster] = (pop - 1, size - v.size)
        if v.cluster == NORMAL:
            store.adjust_meta_keys_txn(
                txn, c.node, _key_deltas(store.attributes_txn(txn, v.serial), {}))
            ctx.charge(c.account, c.project, -v.size)
    store.delete_versions_txn(txn, versions)
    store.add_stats_txn(txn, c.node, changes, None)


def sharing_txn(txn: Any, path: str, perms: Permissions | None, public: bool | None,
                token_length: int) -> str | None:
    """Apply sharing/public changes; the public token afterwards (when
    ``public`` was given).  A new token has ``token_length`` characters,
    one more on each collision."""
    if perms is not None:
        store.set_permissions_txn(txn, path, perms)
    if public is True:
        existing = store.public_tokens_txn(txn, [path]).get(path)
        if existing is not None:
            return existing
        length = token_length
        while True:
            token = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))
            if store.publish_txn(txn, path, token):
                return token
            length += 1
    if public is False:
        store.unpublish_txn(txn, [path])
    return None


__all__ = ["TOKEN_LENGTH", "Container", "copy_txn", "delete_container_txn",
           "delete_object_txn", "delete_version_txn", "expire_object_txn",
           "new_version_txn", "purge_txn", "put_container_txn", "put_object_txn",
           "remove_version_txn", "sharing_txn", "update_account_txn", "update_container_txn",
           "update_object_txn"]
