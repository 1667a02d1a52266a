"""Who may read and write what in the object store.

The owner of an account may do anything in it.  For anyone else the
sharing that governs a path is the closest one among: the object itself,
its ancestor *directory objects* (``a/b`` and ``a`` for ``a/b/c``, when
their latest version has type ``application/directory`` or
``application/folder``), the container path (Swift container ACLs), the
account path (account ACLs).  An entry names a user uuid,
``<owner>:<group>`` (a group of that owner), a project id or ``*``; write
implies read.  A project entry names the callers whose token is scoped to
that project (Keystone's rule, as Glance's image members and Swift's
``<project>:*`` ACLs): a user's base project has the user's uuid as its
id, so an entry naming a user also names that user's base-project scope.
Public links give no access through these rules (only through the
backend's ``public_object``).

``ANONYMOUS`` is a caller without a user: the reader of a public link,
or a Swift client without a token.  It may read the objects that are
themselves public (have an active link), and a container whose own
sharing holds ``*`` in its read list (Swift's ``X-Container-Read: .r:*``)
with the objects in it that no closer sharing governs; nothing else, and
it never writes.  A ``*`` anywhere else (an object's or a directory's
sharing, an account ACL, a write list) names only authenticated users.
Reading a large object through a public link reads its segments as
``ANONYMOUS``: those in public containers are as readable to it as to
anyone without a token.

History is the owner's: anyone else reads only an object's current
version (``PAST_VERSIONS``).

The functions here run inside the caller's transaction (``*_txn``) and
read through ``snfd.pithos.store``; the storage ``Backend`` and the
``IObjectStore`` of ``snfd.pithos.objects`` decide with the same
``access_txn``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from snfd import errors
from snfd.pithos import store
from snfd.pithos.hashmap import EMPTY_HASH
from snfd.pithos.model import ANYONE, Permissions
from snfd.pithos.store import NORMAL

DIRECTORY_TYPES = frozenset({"application/directory", "application/folder"})

ANONYMOUS = ""
"""The caller of a public link (see the module docstring).  No account
or user uuid is empty, so no user is ever taken for it."""


@attrs.frozen
class Access:
    """What the caller may do on a path, and which sharing says so."""

    owner: bool
    read: bool
    write: bool
    path: str | None = None
    permissions: Permissions | None = None
    # The governing path is the object or one of its directory objects.
    object_level: bool = False
    # The caller is ``ANONYMOUS`` (denials are 404s, see ``denied``).
    anonymous: bool = False

    @property
    def allowed_to(self) -> str | None:
        """What a non-owner may do (``"read"``, ``"write"``), as the
        reference's ``X-Object-Allowed-To`` says; ``None`` for the owner."""
        if self.owner:
            return None
        return "write" if self.write else "read" if self.read else None


OWNER = Access(True, True, True)
NOBODY = Access(False, False, False)
PUBLIC = Access(False, True, False, anonymous=True)
"""What ``ANONYMOUS`` may do on a public object."""
HIDDEN = Access(False, False, False, anonymous=True)
"""What ``ANONYMOUS`` may do anywhere else."""


PAST_VERSIONS = "Only the owner may read or list an object's past versions."
"""Why a non-owner (a sharee, ``ANONYMOUS``) is refused any version but
the current one: a grant covers the object as it is now, not its history,
which may hold what was deleted or replaced before the grant was made."""


def everything(path: str) -> Access:
    """The owner's visibility rule: every path, everything allowed."""
    return OWNER


DENIED = "Access was denied to this resource."
"""Swift's answer (403) to a caller who may not touch a path.  It is given
whether or not the path exists (the decision reads only the sharing that
governs it), so it tells nothing about what is there; Swift's clients and
tempest expect it where Pithos used to answer 404."""


def denied(anonymous: bool = False) -> errors.Fault:
    """The fault for a caller who may not read a path: ``DENIED`` (403)
    for a user; for ``ANONYMOUS`` (a public link's reader, who names
    nothing but objects) 404, as for a link that does not exist."""
    if anonymous:
        return errors.NotFound("Not found.")
    return errors.Forbidden(DENIED)


def require(access: Access, what: str, write: bool = False) -> None:
    """``denied`` unless ``access`` reads ``what`` (the same whether it
    exists or not); ``Forbidden`` when ``write`` is needed and not given."""
    if not access.read:
        raise denied(access.anonymous)
    if write and not access.write:
        raise errors.Forbidden(f"No write permission on {what.lower()}.")


def grants(permissions: Permissions, entries: set[str]) -> str | None:
    """``"write"``, ``"read"`` or ``None``: what ``permissions`` grant to
    any of the sharing ``entries``."""
    if entries.intersection(permissions.write):
        return "write"
    if entries.intersection(permissions.read):
        return "read"
    return None


def entries_txn(txn: Any, user: str, permissions: Permissions | None = None,
                project: str | None = None) -> set[str]:
    """The sharing entries naming ``user`` acting in ``project`` (its
    token's scope, ``None`` when unknown): itself, the project, ``*``,
    ``ANYONE`` and its groups (looked up only when ``permissions`` names a
    group); none for ``ANONYMOUS``."""
    if user == ANONYMOUS:
        return set()
    entries = {user, "*", ANYONE}
    if project:
        entries.add(project)
    if permissions is None or any(":" in m for m in permissions.read + permissions.write):
        entries.update(store.memberships_txn(txn, user))
    return entries


def directories_txn(txn: Any, paths: list[str]) -> set[str]:
    """Which of ``paths`` are current directory objects."""
    return _directories(store.types_txn(txn, paths))


def _directories(types: dict[str, tuple[str, int]]) -> set[str]:
    """Which paths of ``types`` (``store.types_txn``) are current
    directory objects."""
    return {p for p, (t, cluster) in types.items()
            if cluster == NORMAL and t in DIRECTORY_TYPES}


def _governing_txn(txn: Any, account: str, container: str | None, name: str | None,
                   ) -> tuple[str | None, dict[str, Permissions], bool]:
    """The path whose sharing governs the account, container or object
    path (see the module docstring; ``None`` when none does), the sharing
    read, and whether the governing path is the object or one of its
    directory objects."""
    paths, ancestors = sharing_paths(account, container, name)
    perms = store.permissions_txn(txn, paths)
    dirs = directories_txn(txn, [p for p in ancestors if p in perms]) if (
        ancestors and any(p in perms for p in ancestors)) else set()
    return _governing(paths, ancestors, perms, dirs, name is not None)


def sharing_paths(account: str, container: str | None,
                  name: str | None) -> tuple[list[str], list[str]]:
    """The paths whose sharing may govern the account, container or
    object path, closest first, and among them the object's possible
    directory objects (its ancestors within the container)."""
    paths: list[str] = []
    ancestors: list[str] = []
    if container is not None:
        cpath = f"{account}/{container}"
        if name is not None:
            paths.append(f"{cpath}/{name}")
            parts = name.split("/")
            ancestors = [f"{cpath}/{'/'.join(parts[:i])}"
                         for i in range(len(parts) - 1, 0, -1)]
            paths.extend(ancestors)
        paths.append(cpath)
    paths.append(account)
    return paths, ancestors


def _governing(paths: list[str], ancestors: list[str], perms: dict[str, Permissions],
               dirs: set[str], is_object: bool,
               ) -> tuple[str | None, dict[str, Permissions], bool]:
    """``_governing_txn`` from what it read: the sharing ``perms`` of the
    ``sharing_paths`` and which ``ancestors`` are directory objects."""
    for i, path in enumerate(paths):
        if path not in perms:
            continue
        if path in ancestors and path not in dirs:
            continue
        return path, perms, is_object and i < len(ancestors) + 1
    return None, perms, False


def owner_access(account: str, container: str | None, name: str | None,
                 perms: dict[str, Permissions],
                 types: dict[str, tuple[str, int]]) -> Access:
    """``access_txn`` for the owner from the sharing ``perms`` of the
    ``sharing_paths`` and ``types_txn`` of the ancestors among them that
    have a sharing (what ``store.object_view_txn`` reads)."""
    paths, ancestors = sharing_paths(account, container, name)
    dirs = _directories({p: t for p, t in types.items() if p in ancestors})
    governing, perms, object_level = _governing(paths, ancestors, perms, dirs,
                                                name is not None)
    return Access(True, True, True, governing,
                  perms.get(governing) if governing else None, object_level)


def access_txn(txn: Any, user: str, account: str, container: str | None,
               name: str | None, detail: bool = True, project: str | None = None) -> Access:
    """What ``user`` acting in ``project`` (see ``entries_txn``) may do on
    the account, container or object path (``detail``: also for the
    owner, which sharing governs it).  ``ANONYMOUS``: see
    ``anonymous_access_txn``."""
    if user == ANONYMOUS:
        return anonymous_access_txn(txn, account, container, name)
    if user == account and not detail:
        return OWNER
    governing, perms, object_level = _governing_txn(txn, account, container, name)
    owner = user == account
    if owner:
        return Access(True, True, True, governing,
                      perms.get(governing) if governing else None, object_level)
    if governing is None:
        return NOBODY
    p = perms[governing]
    grant = grants(p, entries_txn(txn, user, p, project))
    return Access(False, grant is not None, grant == "write", governing, p, object_level)


def readable_by_all(permissions: Permissions | None) -> bool:
    """Whether a container's sharing lets ``ANONYMOUS`` read it: its read
    list holds ``ANYONE`` (Swift's ``X-Container-Read: .r:*``; ``*`` and
    ``*:*`` name authenticated users only)."""
    return permissions is not None and ANYONE in permissions.read


def anonymous_access_txn(txn: Any, account: str, container: str | None,
                         name: str | None) -> Access:
    """What ``ANONYMOUS`` may do on a path: read a container whose own
    sharing is readable by all, and the objects in it that no closer
    sharing (the object's, a directory object's) governs; read an object
    with an active public link; nothing else, and never write."""
    if container is None:
        return HIDDEN
    governing, perms, _ = _governing_txn(txn, account, container, name)
    cpath = f"{account}/{container}"
    if governing == cpath and readable_by_all(perms[cpath]):
        return Access(False, True, False, cpath, perms[cpath], anonymous=True)
    if name is None:
        return HIDDEN
    access = public_access_txn(txn, account, container, name)
    return access if access.read else HIDDEN


def anonymous_visibility_txn(txn: Any, account: str,
                             container: str) -> Callable[[str], Access] | None:
    """For a listing by ``ANONYMOUS`` of a container readable by all: the
    access to each object path (``anonymous_access_txn`` without the
    public links).  ``None`` when the container is not readable by all
    (only its public objects are listed then)."""
    cpath = f"{account}/{container}"
    top = store.permissions_txn(txn, [cpath]).get(cpath)
    if not readable_by_all(top):
        return None
    base = cpath + "/"
    perms = store.permissions_under_txn(txn, base)
    dirs = directories_txn(txn, list(perms))
    everyone = Access(False, True, False, cpath, top, anonymous=True)

    def access(path: str) -> Access:
        if path in perms:
            return HIDDEN
        parts = path[len(base):].split("/")
        if any(base + "/".join(parts[:i]) in dirs for i in range(1, len(parts))):
            return HIDDEN
        return everyone

    return access


def public_access_txn(txn: Any, account: str, container: str | None,
                      name: str | None) -> Access:
    """What ``ANONYMOUS`` may do on a path through public links: read it
    when it is an object with an active one; nothing otherwise."""
    if container is None or name is None:
        return NOBODY
    path = f"{account}/{container}/{name}"
    return PUBLIC if store.public_tokens_txn(txn, [path]) else NOBODY


def shares_under_txn(txn: Any, user: str, prefix: str) -> bool:
    """Whether any sharing under ``prefix`` names ``user``."""
    entries = sorted(entries_txn(txn, user))
    return bool(store.permissions_under_txn(txn, prefix, entries))


def owner_only_txn(txn: Any, user: str, account: str, container: str) -> None:
    """Nothing when ``user`` owns the container; else ``Forbidden``."""
    if user == account:
        return
    access = access_txn(txn, user, account, container, None)
    if not access.read and not shares_under_txn(txn, user, f"{account}/{container}/"):
        raise denied(user == ANONYMOUS)
    raise errors.Forbidden("Only the owner may change a container.")


def visibility_txn(txn: Any, user: str, account: str, container: str,
                   ) -> tuple[Callable[[str], Access], list[str] | None, list[str]]:
    """For a non-owner listing: a function telling the access to each
    object path, and the paths/prefixes that can hold readable ones
    (``None``: anywhere).  ``Forbidden`` if nothing is shared."""
    cpath = f"{account}/{container}"
    base = cpath + "/"
    entries = entries_txn(txn, user)
    perms = store.permissions_under_txn(txn, base)
    top = store.permissions_txn(txn, [cpath, account])
    dirs = directories_txn(txn, list(perms))
    top_path = cpath if cpath in top else account if account in top else None
    top_access = NOBODY
    if top_path is not None:
        grant = grants(top[top_path], entries)
        top_access = Access(False, grant is not None, grant == "write", top_path,
                            top[top_path])

    def access(path: str) -> Access:
        governing: str | None = None
        if path in perms:
            governing = path
        else:
            parts = path[len(base):].split("/")
            for i in range(len(parts) - 1, 0, -1):
                ancestor = base + "/".join(parts[:i])
                if ancestor in dirs:
                    governing = ancestor
                    break
        if governing is None:
            return top_access
        grant = grants(perms[governing], entries)
        return Access(False, grant is not None, grant == "write", governing,
                      perms[governing], True)

    if top_access.read:
        return access, None, []
    granted = sorted(p for p, perm in perms.items() if grants(perm, entries) is not None)
    if not granted:
        raise denied(user == ANONYMOUS)
    return access, granted, sorted(p + "/" for p in granted if p in dirs)


BLOCK_CANDIDATES = 1000
"""How many (block, object) pairs ``nameable_blocks_txn`` examines for the
blocks found in no object of the caller's: a block only in objects beyond
them counts as unknown (the client uploads it, as for any missing one)."""


def nameable_blocks_txn(txn: Any, user: str, hashes: list[str]) -> set[str]:
    """Which of ``hashes`` ``user`` may name in a hashmap: blocks it
    uploaded (``store.record_uploads_txn``), blocks of any version of its
    own objects, and blocks of current objects it may read.  Whether any
    other block exists is never told (the audit's cross-tenant oracle)."""
    wanted = {h for h in hashes if h != EMPTY_HASH}
    if user == ANONYMOUS or not wanted:
        return set()
    known = store.uploaded_txn(txn, user, wanted)
    known |= store.blocks_under_txn(txn, user + "/", wanted - known)
    rest = wanted - known
    if rest:
        seen: dict[str, Access] = {}
        for h, path in store.current_block_paths_txn(txn, rest, BLOCK_CANDIDATES):
            if h in known:
                continue
            if path not in seen:
                account, container, name = path.split("/", 2)
                seen[path] = access_txn(txn, user, account, container, name, detail=False)
            if seen[path].read:
                known.add(h)
    return known


__all__ = ["ANONYMOUS", "BLOCK_CANDIDATES", "DIRECTORY_TYPES", "NOBODY", "OWNER",
           "PAST_VERSIONS", "PUBLIC", "Access", "access_txn", "anonymous_access_txn",
           "anonymous_visibility_txn", "directories_txn", "entries_txn", "everything",
           "grants", "nameable_blocks_txn", "owner_only_txn", "public_access_txn",
           "readable_by_all", "require", "shares_under_txn", "visibility_txn"]
