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

Permissions.  The owner may do anything.  For anyone else the sharing
that governs a path is the closest one among: the object itself, its
ancestor *directory objects* (``a/b`` and ``a`` for ``a/b/c``, when their
latest version has type ``application/directory`` or
``application/folder``), the container path (Swift container ACLs), the
account path (account ACLs).  An entry names a user uuid,
``<owner>:<group>`` (a group of that owner) or ``*``; write implies read.
Public links give no access through this API (only through
``public_object``).

Transactions.  A read (HEAD/GET of an object or container) is one
database transaction; a write is one transaction that locks the
container row (``FOR UPDATE``) first.  With an account quota charger, a
write that changes usage issues its commission before the transaction,
records the decision inside it (``snfd.quota.serials.decide_txn``) and
settles after it.  The charge is known only inside the transaction; the
backend guesses it (a new object of the uploaded size in the container's
last known project), and when the guess is wrong the transaction rolls
back, the commission is rejected and the change runs again with the right
one.

Blocks and garbage collection.  A transaction that makes a version
reference blocks holds the collector's advisory lock shared and re-checks,
inside the transaction, that its blocks exist (``missing_now`` of the
block store) and are not being collected.  The collector marks the
unreferenced blocks of a page under the exclusive lock, deletes them from
the block store (sparing blocks stored or refreshed within the grace),
then unmarks them; so a block is never deleted while a committed version
references it.  A map is deleted in the transaction that removes its last
version.
"""

from __future__ import annotations

import secrets
import string
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
from twisted.logger import Logger

from snfd import errors
from snfd.pithos import store
from snfd.pithos.hashmap import BLOCK_SIZE, EMPTY_HASH, HashmapError, checked_hashmap, merkle
from snfd.pithos.model import (
    VERSIONING,
    AccountInfo,
    ContainerInfo,
    ContainerPolicy,
    ObjectInfo,
    Permissions,
    Sharer,
    Subdir,
)
from snfd.pithos.store import DELETED, HISTORY, NORMAL, MetaFilter, Version
from snfd.quota import (
    NoHoldingError,
    Provision,
    QuotaError,
    user_and_project,
)
from snfd.quota import serials as qs
from snfd.quota.charged import Attempt, Recharge, Settle, run_charged

log = Logger(namespace="snfd.pithos")

T = TypeVar("T")

# Limits of the reference.
MAX_CONTAINER_NAME = 256
MAX_OBJECT_NAME = 1024
MAX_ACCOUNT_NAME = 256
MAX_META_KEYS = 32
MAX_GROUPS = 32
MAX_GROUP_MEMBERS = 32
MAX_LIST = 10000

# ``permissions`` argument meaning "leave the permissions as they are".
KEEP = None

COMPONENT = "pithos"
DISKSPACE = "pithos.diskspace"
DIRECTORY_TYPES = frozenset({"application/directory", "application/folder"})
POLICY_KEYS = ("quota", "versioning", "project")
TOKEN_ALPHABET = string.digits + string.ascii_letters
TOKEN_LENGTH = 16

_USER_META = "x-object-meta-"
_OBJECT_META_PREFIX = "X-Object-Meta-"
# Content headers a metadata replacement (POST without ?update) replaces
# along with the user meta; other stored keys (SLO markers) stay.
_CONTENT_HEADERS = frozenset({"content-encoding", "content-disposition", "x-object-manifest"})
_ATTEMPTS = 8


class MissingBlocks(errors.Conflict):
    """A hashmap names blocks the store does not have (409; the body is the
    JSON list of their hashes)."""

    def __init__(self, hashes: Sequence[str]):
        super().__init__(f"{len(hashes)} blocks are missing.")
        self.hashes = list(hashes)


# -- validation ---------------------------------------------------------------

def check_account_name(name: str) -> None:
    _check_name("Account", name, MAX_ACCOUNT_NAME, slash=False)


def check_container_name(name: str) -> None:
    """``BadRequest`` unless ``name`` is a valid container name."""
    _check_name("Container", name, MAX_CONTAINER_NAME, slash=False)


def check_object_name(name: str) -> None:
    """``BadRequest`` unless ``name`` is a valid object name."""
    _check_name("Object", name, MAX_OBJECT_NAME, slash=True)


def _check_name(kind: str, name: str, limit: int, slash: bool) -> None:
    if not isinstance(name, str) or not name:
        raise errors.BadRequest(f"{kind} name is empty.")
    if len(name) > limit:
        raise errors.BadRequest(f"{kind} name is longer than {limit} characters.")
    if "\x00" in name:
        raise errors.BadRequest(f"{kind} name contains a NUL character.")
    if not slash and "/" in name:
        raise errors.BadRequest(f"{kind} name contains '/'.")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.BadRequest(f"{kind} name is not valid Unicode.") from None


def is_user_meta(key: str) -> bool:
    """Whether an object attribute key is user metadata (X-Object-Meta-*)."""
    return key.lower().startswith(_USER_META)


def _replaceable(key: str) -> bool:
    return is_user_meta(key) or key.lower() in _CONTENT_HEADERS


def _check_meta(meta: Mapping[str, str], prefix: str) -> None:
    count = sum(1 for k in meta if k.lower().startswith(prefix.lower()))
    if count > MAX_META_KEYS:
        raise errors.BadRequest(
            f"Too many metadata keys ({count}; at most {MAX_META_KEYS}).")
    for key, value in meta.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise errors.BadRequest("Metadata keys and values must be text.")
        if "\x00" in key or "\x00" in value:
            raise errors.BadRequest("Metadata may not contain NUL characters.")


def check_attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    """The attributes of one domain other than ``pithos`` as stored: at
    most ``MAX_META_KEYS`` keys, non-empty text keys and text values
    without NUL characters; ``BadRequest`` otherwise."""
    if len(attributes) > MAX_META_KEYS:
        raise errors.BadRequest(
            f"Too many attributes ({len(attributes)}; at most {MAX_META_KEYS}).")
    for key, value in attributes.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise errors.BadRequest("Attribute keys must be non-empty text, values text.")
        if "\x00" in key or "\x00" in value:
            raise errors.BadRequest("Attributes may not contain NUL characters.")
    return dict(attributes)


def merged_meta(old: Mapping[str, str], meta: Mapping[str, str], replace: bool,
                replaceable: Callable[[str], bool] = lambda key: True) -> dict[str, str]:
    """``meta`` applied to ``old``: ``replace`` drops every replaceable key
    first; otherwise an empty value deletes its key."""
    if replace:
        out = {k: v for k, v in old.items() if not replaceable(k)}
        out.update({k: v for k, v in meta.items() if v != ""})
        return out
    out = dict(old)
    for key, value in meta.items():
        if value == "":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def meta_key(key: str) -> str:
    """A metadata key as stored: underscores become dashes and every
    dash-separated word is capitalised."""
    return "-".join(w.capitalize() for w in key.strip().replace("_", "-").split("-"))


def parse_meta_filters(filters: Sequence[str]) -> list[MetaFilter]:
    """The reference's ``meta`` listing filters: ``key``, ``!key`` and
    ``key<op>value`` with ``op`` one of ``= != <= >= < >``; keys are user
    metadata keys (normalised as ``meta_key``)."""
    out = []
    for raw in filters:
        f = raw.strip()
        if not f:
            continue
        if f.startswith("!") and not f.startswith("!="):
            out.append(MetaFilter(_OBJECT_META_PREFIX + meta_key(f[1:]), "not"))
            continue
        for i, ch in enumerate(f):
            two = f[i:i + 2]
            if two in ("!=", "<=", ">="):
                op = two
            elif ch in "=<>":
                op = ch
            else:
                continue
            key = f[:i].strip()
            if not key:
                raise errors.BadRequest(f"Bad meta filter {raw!r}.")
            out.append(MetaFilter(_OBJECT_META_PREFIX + meta_key(key), op,
                                  f[i + len(op):].strip()))
            break
        else:
            out.append(MetaFilter(_OBJECT_META_PREFIX + meta_key(f), "has"))
    return out


def _clean_entries(entries: Sequence[str]) -> tuple[str, ...]:
    out: set[str] = set()
    for raw in entries:
        entry = "".join(str(raw).split()).lower()
        if not entry:
            continue
        if entry == "*":
            return ("*",)
        if (any(c in entry for c in ",;=/\x00") or entry.count(":") > 1
                or entry.startswith(":") or entry.endswith(":")):
            raise errors.BadRequest(f"Bad sharing entry {raw!r}.")
        out.add(entry)
    return tuple(sorted(out))


def checked_permissions(permissions: Permissions) -> Permissions:
    """Sharing as stored: entries without spaces, lowercased, ``*``
    absorbing the rest of its list; ``BadRequest`` on bad syntax."""
    return Permissions(_clean_entries(permissions.read), _clean_entries(permissions.write))


def checked_policy(policy: Mapping[str, str]) -> dict[str, str | None]:
    """Container policy keys as stored (``None``: back to the default)."""
    out: dict[str, str | None] = {}
    for key, raw in policy.items():
        k = key.strip().lower()
        value = (raw or "").strip()
        if k not in POLICY_KEYS:
            raise errors.BadRequest(f"Unknown container policy {key!r}"
                                    f" (known: {', '.join(POLICY_KEYS)}).")
        if not value:
            out[k] = None
        elif k == "quota":
            try:
                quota = int(value)
            except ValueError:
                quota = -1
            if quota < 0:
                raise errors.BadRequest(f"Bad quota policy {raw!r} (bytes, 0 = unlimited).")
            out[k] = str(quota)
        elif k == "versioning":
            if value.lower() not in VERSIONING:
                raise errors.BadRequest(
                    f"Bad versioning policy {raw!r} (one of {', '.join(VERSIONING)}).")
            out[k] = value.lower()
        else:
            if "\x00" in value or len(value) > 256:
                raise errors.BadRequest(f"Bad project policy {raw!r}.")
            out[k] = value
    return out


def _check_groups(groups: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    out = {}
    for raw, members in groups.items():
        name = raw.strip().lower()
        if not name or any(c in name for c in ",;=:/\x00") or len(name) > 256:
            raise errors.BadRequest(f"Bad group name {raw!r}.")
        cleaned = _clean_entries(members)
        if any(":" in m or m == "*" for m in cleaned):
            raise errors.BadRequest(f"Group {raw!r}: members must be user ids.")
        if len(cleaned) > MAX_GROUP_MEMBERS:
            raise errors.BadRequest(
                f"Group {raw!r} has {len(cleaned)} members; at most {MAX_GROUP_MEMBERS}.")
        out[name] = cleaned
    return out


def _key_deltas(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, int]:
    before = {k for k in old if is_user_meta(k)}
    after = {k for k in new if is_user_meta(k)}
    deltas = {k: 1 for k in after - before}
    deltas.update({k: -1 for k in before - after})
    return deltas


def _provisions(charges: Mapping[tuple[str, str], int]) -> list[Provision]:
    out: list[Provision] = []
    for (account, project), delta in sorted(charges.items()):
        out.extend(user_and_project(account, project, DISKSPACE, delta))
    return out


def _refused(error: QuotaError) -> BaseException:
    """What a write the quota holder refuses answers."""
    if isinstance(error, NoHoldingError):
        return errors.OverLimit(
            f"No {DISKSPACE} quota for this account in project"
            f" {error.provision.source or error.provision.holder}.")
    return error


# -- per-transaction state ----------------------------------------------------

class _Ctx:
    """What one write transaction charges, checked against what was issued."""

    def __init__(self, active: bool, expected: dict[tuple[str, str], int] | None,
                 serial: int | None):
        self.active = active
        self.expected = expected
        self.serial = serial
        self.charges: dict[tuple[str, str], int] = {}
        self.projects: dict[str, str] = {}

    def begin(self) -> None:
        # The pool may run the interaction again after a conflict.
        self.charges = {}
        self.projects = {}

    def charge(self, account: str, project: str, delta: int) -> None:
        if delta:
            key = (account, project)
            self.charges[key] = self.charges.get(key, 0) + delta

    def finish(self, txn: Any) -> None:
        """Last step of a write transaction: roll back unless the charge is
        the one issued, then record the commission's acceptance."""
        actual = {k: v for k, v in self.charges.items() if v}
        if not self.active:
            return
        if (self.expected is None and actual) or (
                self.expected is not None and actual != self.expected):
            raise Recharge(actual)
        if self.serial is not None:
            record = qs.decide_txn(txn, COMPONENT, self.serial, True)
            if not record.accept:
                raise errors.ServiceUnavailable(
                    "The quota commission of this change was withdrawn; retry.")


@attrs.frozen
class _Access:
    """What the caller may do on a path, and which sharing says so."""

    owner: bool
    read: bool
    write: bool
    path: str | None = None
    permissions: Permissions | None = None
    # The governing path is the object or one of its directory objects.
    object_level: bool = False

    @property
    def allowed_to(self) -> str | None:
        if self.owner:
            return None
        return "write" if self.write else "read" if self.read else None


_OWNER = _Access(True, True, True)
_NOBODY = _Access(False, False, False)


@attrs.frozen
class _Container:
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


def _everything(path: str) -> _Access:
    return _OWNER


def _require(access: _Access, what: str, write: bool = False) -> None:
    if not access.read:
        raise errors.NotFound(f"{what} does not exist.")
    if write and not access.write:
        raise errors.Forbidden(f"No write permission on {what.lower()}.")


def _policy(policy: Mapping[str, str], account: str) -> ContainerPolicy:
    return ContainerPolicy(quota=int(policy.get("quota") or 0),
                           versioning=policy.get("versioning") or "auto",
                           project=policy.get("project") or account)


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
    """

    def __init__(self, db: Any, blocks: Any, charger: Any, clock: Any, *,
                 public_token_length: int = TOKEN_LENGTH):
        self.db = db
        self.blocks = blocks
        self.charger = charger
        self.clock = clock
        self.public_token_length = public_token_length
        # Last known project of each container path: the guess of a charge.
        self._projects: dict[str, str] = {}

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
        rows: list[Sharer] = await self.db.run("pithos.sharers", self._sharers_txn, user,
                                               marker, limit)
        return rows

    def _sharers_txn(self, txn: Any, user: str, marker: str | None,
                     limit: int) -> list[Sharer]:
        entries = sorted(self._entries_txn(txn, user))
        return [Sharer(name, mtime)
                for name, mtime in store.sharers_txn(txn, user, entries, marker, limit)]

    # -- account --------------------------------------------------------------

    async def account(self, user: str, account: str,
                      until: float | None = None) -> AccountInfo:
        """The account's statistics, metadata, groups, quotas and own
        sharing (owner).  Another user gets only name and mtime, and only
        when the account shares something with them (else ``NotFound``);
        ``until`` is then ``Forbidden``.  An account never used answers
        zeros (accounts are created on first write)."""
        check_account_name(account)
        info: AccountInfo = await self.db.run("pithos.account", self._account_txn, user,
                                              account, until)
        if user == account:
            quotas = await self._quotas(account)
            if quotas:
                info = attrs.evolve(info, quotas=quotas)
        return info

    def _account_txn(self, txn: Any, user: str, account: str,
                     until: float | None) -> AccountInfo:
        node = store.node_txn(txn, account)
        if user != account:
            access = self._access_txn(txn, user, account, None, None)
            if not access.read and not self._shares_under_txn(txn, user, account + "/"):
                raise errors.NotFound("Account does not exist.")
            if until is not None:
                raise errors.Forbidden("Only the owner may look at an account's past.")
            mtime = store.account_totals_txn(txn, node)[2] if node is not None else 0.0
            return AccountInfo(account, 0, 0, mtime)
        groups = store.groups_txn(txn, account)
        sharing = store.permissions_txn(txn, [account]).get(account)
        if node is None:
            return AccountInfo(account, 0, 0, 0.0, until=until, groups=groups,
                               sharing=sharing)
        count, size, mtime = store.account_totals_txn(txn, node)
        if until is not None:
            count, size, mtime = 0, 0, 0.0
            for row in self._all_containers_txn(txn, node):
                stats = store.stats_as_of_txn(txn, row.node, until)
                count += 1
                size += stats.size
                mtime = max(mtime, stats.mtime)
        return AccountInfo(account, count, size, mtime, until=until,
                           meta=store.node_meta_txn(txn, node), groups=groups,
                           sharing=sharing)

    def _all_containers_txn(self, txn: Any, account_node: int) -> list[store.ContainerRow]:
        return store.container_rows_txn(txn, account_node, limit=1_000_000)

    async def _quotas(self, account: str) -> dict[str, int]:
        holder = self.charger.holder if self.charger is not None else None
        if holder is None:
            return {}
        try:
            holdings = await holder.quotas([f"user:{account}"], None, [DISKSPACE])
        except Exception:
            log.failure("pithos: cannot read the quotas of {account}", account=account)
            return {}
        return {h.source.split(":", 1)[1]: h.limit for h in holdings
                if h.source and h.source.startswith("project:")}

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
        checked_groups = _check_groups(groups) if groups is not None else None
        perms = checked_permissions(permissions) if permissions is not None else None
        await self.db.run("pithos.update_account", self._update_account_txn, account,
                          dict(meta) if meta is not None else None, replace,
                          checked_groups, perms, self.clock.seconds())

    def _update_account_txn(self, txn: Any, account: str, meta: dict[str, str] | None,
                            replace: bool, groups: dict[str, tuple[str, ...]] | None,
                            perms: Permissions | None, now: float) -> None:
        node = store.ensure_account_txn(txn, account, now)
        if meta is not None:
            new = merged_meta(store.node_meta_txn(txn, node), meta, replace)
            _check_meta(new, "X-Account-Meta-")
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
            "pithos.containers", self._containers_txn, user, account, marker, end_marker,
            prefix or "", limit, reverse, shared, public, until)
        return rows

    def _containers_txn(self, txn: Any, user: str, account: str, marker: str | None,
                        end_marker: str | None, prefix: str, limit: int, reverse: bool,
                        shared: bool, public: bool,
                        until: float | None) -> list[ContainerInfo]:
        owner = user == account
        node = store.node_txn(txn, account)
        base = account + "/"
        only: set[str] | None = None
        whole: set[str] | None = None  # non-owner: containers readable whole
        if not owner:
            access = self._access_txn(txn, user, account, None, None)
            entries = self._entries_txn(txn, user)
            granted = store.permissions_under_txn(txn, base, sorted(entries))
            names = {p[len(base):].split("/", 1)[0] for p in granted}
            if not access.read and not names:
                raise errors.NotFound("Account does not exist.")
            if public:
                raise errors.Forbidden("Only the owner may list public objects.")
            if until is not None:
                raise errors.Forbidden("Only the owner may look at an account's past.")
            if access.read:
                whole = None  # everything
            else:
                whole = {p[len(base):] for p, perms in granted.items()
                         if "/" not in p[len(base):]
                         and self._grants(perms, entries) is not None}
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
                                         policy=_policy(policies[row.node], account),
                                         until=until))
            elif whole is None or row.name in whole:
                out.append(ContainerInfo(account, row.name, stats.population, stats.size,
                                         stats.mtime))
            else:
                out.append(ContainerInfo(account, row.name, 0, 0, stats.mtime))
        return out

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
        info: ContainerInfo = await self.db.run(
            "pithos.container", self._container_txn, user, account, container, until)
        return info

    def _container_txn(self, txn: Any, user: str, account: str, container: str,
                       until: float | None) -> ContainerInfo:
        path = f"{account}/{container}"
        access = self._access_txn(txn, user, account, container, None)
        if not access.owner:
            if not access.read and not self._shares_under_txn(txn, user, path + "/"):
                raise errors.NotFound("Container does not exist.")
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
            if access.read:
                return ContainerInfo(account, container, stats.population, stats.size,
                                     stats.mtime)
            return ContainerInfo(account, container, 0, 0, stats.mtime)
        keys = tuple(k[len(_OBJECT_META_PREFIX):] for k in store.meta_keys_txn(txn, node))
        return ContainerInfo(
            account, container, stats.population, stats.size, stats.mtime,
            policy=_policy(store.policy_txn(txn, node), account), until=until,
            meta=store.node_meta_txn(txn, node), object_meta=keys,
            sharing=store.permissions_txn(txn, [path]).get(path))

    async def put_container(self, user: str, account: str, container: str,
                            policy: Mapping[str, str],
                            meta: Mapping[str, str]) -> bool:
        """Create the container; ``True`` if created.  An existing one has
        ``policy`` and ``meta`` merged (as ``update_container`` with
        ``replace=False``) and answers ``False``.  Policy keys: quota,
        versioning, project (others: ``BadRequest``).  Owner only."""
        check_account_name(account)
        check_container_name(container)
        if user != account:
            raise errors.Forbidden("Only the owner may create containers.")
        checked = checked_policy(policy)
        await self._check_project(account, checked.get("project"))
        meta = dict(meta)
        _check_meta(meta, "X-Container-Meta-")
        created: bool = await self._write(
            "pithos.put_container", self._put_container_txn, account, container, checked,
            meta, self.clock.seconds(), expect={}, label=f"{account}/{container}")
        return created

    def _put_container_txn(self, txn: Any, ctx: _Ctx, account: str, container: str,
                           policy: dict[str, str | None], meta: dict[str, str],
                           now: float) -> bool:
        ctx.begin()
        anode = store.ensure_account_txn(txn, account, now)
        path = f"{account}/{container}"
        node = store.create_node_txn(txn, anode, path)
        if node is None:
            self._update_container_locked_txn(txn, ctx, account, container, meta, False,
                                              policy, None, now)
            ctx.finish(txn)
            return False
        store.add_stats_txn(txn, node, {}, now)
        store.set_policy_txn(txn, node, {k: v for k, v in policy.items() if v is not None})
        store.set_node_meta_txn(txn, node, {k: v for k, v in meta.items() if v != ""})
        store.add_stats_txn(txn, anode, {}, now)
        ctx.projects[path] = policy.get("project") or account
        ctx.finish(txn)
        return True

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
            await self._check_project(account, checked.get("project"))
        if meta is not None:
            meta = dict(meta)
        perms = checked_permissions(permissions) if permissions is not None else None
        await self._write("pithos.update_container", self._update_container_txn, user,
                          account, container, meta, replace, checked, perms,
                          self.clock.seconds(), label=f"{account}/{container}")

    def _update_container_txn(self, txn: Any, ctx: _Ctx, user: str, account: str,
                              container: str, meta: dict[str, str] | None, replace: bool,
                              policy: dict[str, str | None] | None,
                              perms: Permissions | None, now: float) -> None:
        ctx.begin()
        self._owner_only_txn(txn, user, account, container)
        self._update_container_locked_txn(txn, ctx, account, container, meta, replace,
                                          policy, perms, now)
        ctx.finish(txn)

    def _owner_only_txn(self, txn: Any, user: str, account: str, container: str) -> None:
        if user == account:
            return
        access = self._access_txn(txn, user, account, container, None)
        if not access.read and not self._shares_under_txn(
                txn, user, f"{account}/{container}/"):
            raise errors.NotFound("Container does not exist.")
        raise errors.Forbidden("Only the owner may change a container.")

    def _update_container_locked_txn(self, txn: Any, ctx: _Ctx, account: str,
                                     container: str, meta: dict[str, str] | None,
                                     replace: bool, policy: dict[str, str | None] | None,
                                     perms: Permissions | None, now: float) -> None:
        c = self._lock_container_txn(txn, account, container)
        if meta is not None:
            new = merged_meta(store.node_meta_txn(txn, c.node), meta, replace)
            _check_meta(new, "X-Container-Meta-")
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

    async def _check_project(self, account: str, project: str | None) -> None:
        """``BadRequest`` unless the account draws pithos.diskspace from
        ``project`` (checked only when a quota holder is known)."""
        if not project or project == account:
            return
        holder = self.charger.holder if self.charger is not None else None
        if holder is None:
            return
        found = await holder.quotas([f"user:{account}"], [f"project:{project}"], [DISKSPACE])
        if not found:
            raise errors.BadRequest(f"Project {project!r} gives this account no storage.")

    async def delete_container(self, user: str, account: str, container: str,
                               until: float | None = None,
                               delimiter: str | None = None) -> None:
        """Delete an empty container (``Conflict`` if it holds objects).
        ``until``: purge history up to that time, keep the container.
        ``delimiter``: delete every object first, then the container.
        Owner only."""
        check_account_name(account)
        check_container_name(container)
        await self._write("pithos.delete_container", self._delete_container_txn, user,
                          account, container, until, delimiter, self.clock.seconds(),
                          label=f"{account}/{container}")

    def _delete_container_txn(self, txn: Any, ctx: _Ctx, user: str, account: str,
                              container: str, until: float | None, delimiter: str | None,
                              now: float) -> None:
        ctx.begin()
        self._owner_only_txn(txn, user, account, container)
        c = self._lock_container_txn(txn, account, container)
        if until is not None:
            self._purge_txn(txn, ctx, c, store.purgeable_txn(
                txn, parent=c.node, until=until, clusters=(HISTORY, DELETED)))
            ctx.finish(txn)
            return
        stats = store.stats_txn(txn, c.node).get(NORMAL, store.Stats())
        if delimiter is None:
            if stats.population > 0:
                raise errors.Conflict("Container is not empty.")
        else:
            ctx.charge(account, c.project, -stats.size)
        store.delete_container_txn(txn, c.node, c.path)
        anode = store.node_txn(txn, account)
        if anode is not None:
            store.add_stats_txn(txn, anode, {}, now)
        ctx.finish(txn)

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
        read.  Entries carry no hashmap.

        ``path_mode``: ``prefix`` is the path; the listing holds the
        objects directly under ``<path>/`` (and those whose name ends
        with ``/`` one level down), no ``Subdir``.  ``shared``: only
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
            "pithos.objects", self._objects_txn, user, account, container, prefix or "",
            delimiter, marker, end_marker, limit, reverse, path_mode, filters, shared,
            public, until)
        return rows

    def _objects_txn(self, txn: Any, user: str, account: str, container: str, prefix: str,
                     delimiter: str | None, marker: str | None, end_marker: str | None,
                     limit: int, reverse: bool, path_mode: bool,
                     filters: list[MetaFilter], shared: bool, public: bool,
                     until: float | None) -> list[ObjectInfo | Subdir]:
        owner = user == account
        cpath = f"{account}/{container}"
        base = cpath + "/"
        exact: list[str] | None = None
        prefixes: list[str] = []
        visible: Callable[[str], _Access] = _everything
        if not owner:
            visible, exact, prefixes = self._visibility_txn(txn, user, account, container)
            if public:
                raise errors.Forbidden("Only the owner may list public objects.")
            if until is not None:
                raise errors.Forbidden("Only the owner may look at a container's past.")
        node = store.node_txn(txn, cpath)
        if node is None:
            raise errors.NotFound("Container does not exist.")
        if owner and shared:
            perms = store.permissions_under_txn(txn, base)
            dirs = self._directories_txn(txn, list(perms))
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
        found: list[tuple[str, Version, _Access] | str] = []
        group: str | None = None    # names under this subdir are skipped
        pending: str | None = None  # reverse: a subdir waiting for its object
        dlen = len(delimiter or "")
        while len(found) < limit:
            batch = min(max(2 * (limit - len(found)), 100), MAX_LIST)
            rows = store.object_rows_txn(
                txn, node, lo=lo, hi=hi, after=after, before=before, reverse=reverse,
                limit=batch, until=until, filters=filters, exact=exact, prefixes=prefixes,
                public_only=owner and public)
            for path, version in rows:
                if reverse:
                    before = path
                else:
                    after = path
                name = path[len(base):]
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
        return self._listing_txn(txn, account, container, found, owner, until)

    def _listing_txn(self, txn: Any, account: str, container: str,
                     found: list[tuple[str, Version, _Access] | str], owner: bool,
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
                v.size, v.type, v.mtime, v.muser, block_size=self.block_size,
                sharing=perms.get(path), allowed_to=access.allowed_to,
                public=tokens.get(path)))
        return out

    def _visibility_txn(self, txn: Any, user: str, account: str, container: str,
                        ) -> tuple[Callable[[str], _Access], list[str] | None, list[str]]:
        """For a non-owner listing: a function telling the access to each
        object path, and the paths/prefixes that can hold readable ones
        (``None``: anywhere).  ``NotFound`` if nothing is shared."""
        cpath = f"{account}/{container}"
        base = cpath + "/"
        entries = self._entries_txn(txn, user)
        perms = store.permissions_under_txn(txn, base)
        top = store.permissions_txn(txn, [cpath, account])
        dirs = self._directories_txn(txn, list(perms))
        top_path = cpath if cpath in top else account if account in top else None
        top_access = _NOBODY
        if top_path is not None:
            grant = self._grants(top[top_path], entries)
            top_access = _Access(False, grant is not None, grant == "write", top_path,
                                 top[top_path])

        def access(path: str) -> _Access:
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
            grant = self._grants(perms[governing], entries)
            return _Access(False, grant is not None, grant == "write", governing,
                           perms[governing], True)

        if top_access.read:
            return access, None, []
        granted = sorted(p for p, perm in perms.items()
                         if self._grants(perm, entries) is not None)
        if not granted:
            raise errors.NotFound("Container does not exist.")
        return access, granted, sorted(p + "/" for p in granted if p in dirs)

    def _directories_txn(self, txn: Any, paths: list[str]) -> set[str]:
        """Which of ``paths`` are current directory objects."""
        types = store.types_txn(txn, paths)
        return {p for p, (t, cluster) in types.items()
                if cluster == NORMAL and t in DIRECTORY_TYPES}

    # -- objects --------------------------------------------------------------

    async def object(self, user: str, account: str, container: str, name: str,
                     version: int | None = None) -> ObjectInfo:
        """The latest version (or ``version``, which may be in history or
        a deletion marker, then ``deleted``) with its metadata and
        hashmap and, for the latest, sharing details: ``sharing`` (owner)
        and ``shared_by`` from the object's own or its directory object's
        sharing, ``allowed_to`` (others), ``public`` (owner)."""
        self._check_path(account, container, name)
        info: ObjectInfo = await self.db.run("pithos.object", self._object_txn, user,
                                             account, container, name, version)
        return info

    def _object_txn(self, txn: Any, user: str, account: str, container: str, name: str,
                    version: int | None) -> ObjectInfo:
        access = self._access_txn(txn, user, account, container, name)
        _require(access, "Object")
        path = f"{account}/{container}/{name}"
        latest = store.latest_txn(txn, path)
        if latest is None:
            raise errors.NotFound("Object does not exist.")
        if version is None:
            if latest.cluster != NORMAL:
                raise errors.NotFound("Object does not exist.")
            v = latest
        else:
            found = store.version_txn(txn, version)
            if found is None or found.node != latest.node:
                raise errors.NotFound(f"Object has no version {version}.")
            v = found
        meta = store.attributes_txn(txn, v.serial)
        hashes = [] if v.cluster == DELETED else store.map_hashes_txn(txn, v.map_id)
        return self._info_txn(txn, access, account, container, name, v, meta, hashes,
                              latest=v.serial == latest.serial and v.cluster == NORMAL)

    def _info_txn(self, txn: Any, access: _Access, account: str, container: str,
                  name: str, v: Version, meta: dict[str, str], hashes: list[str] | None,
                  latest: bool = True) -> ObjectInfo:
        sharing = shared_by = public = None
        path = f"{account}/{container}/{name}"
        if latest:
            if access.object_level:
                if access.path != path:
                    shared_by = access.path
                if access.owner:
                    sharing = access.permissions
            if access.owner:
                public = store.public_tokens_txn(txn, [path]).get(path)
        return ObjectInfo(account, container, name, v.serial, v.uuid, v.hash, v.checksum,
                          v.size, v.type, v.mtime, v.muser, meta=meta, hashes=hashes,
                          block_size=self.block_size, sharing=sharing, shared_by=shared_by,
                          allowed_to=access.allowed_to if latest else None, public=public,
                          deleted=v.cluster == DELETED)

    async def versions(self, user: str, account: str, container: str,
                       name: str) -> list[tuple[int, float]]:
        """``[(serial, mtime)]`` ascending, also for a deleted object
        (deletion markers are not listed)."""
        self._check_path(account, container, name)
        found: list[tuple[int, float]] = await self.db.run(
            "pithos.versions", self._versions_txn, user, account, container, name)
        return found

    def _versions_txn(self, txn: Any, user: str, account: str, container: str,
                      name: str) -> list[tuple[int, float]]:
        access = self._access_txn(txn, user, account, container, name)
        _require(access, "Object")
        node = store.node_txn(txn, f"{account}/{container}/{name}")
        if node is None:
            raise errors.NotFound("Object does not exist.")
        return store.versions_txn(txn, node)

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
        ``pithos.diskspace`` by the size difference (free versioning).
        The returned info carries the hashmap; its ``sharing``/``public``
        are set only when this call changed them."""
        self._check_path(account, container, name)
        try:
            size, hashes = checked_hashmap(size, list(hashes), self.block_size)
        except HashmapError as e:
            raise errors.BadRequest(str(e)) from None
        new_meta = None
        if meta is not None:
            new_meta = {k: v for k, v in meta.items() if v != ""}
            _check_meta(new_meta, _USER_META)
        perms = checked_permissions(permissions) if permissions is not None else None
        wanted = list(dict.fromkeys(h for h in hashes if h != EMPTY_HASH))
        if wanted:
            missing = await self.blocks.missing(wanted)
            if missing:
                raise MissingBlocks(missing)
        cpath = f"{account}/{container}"
        guess = {(account, self._projects.get(cpath, account)): size} if size else {}
        info: ObjectInfo = await self._write(
            "pithos.put_object", self._put_object_txn, user, account, container, name, size,
            hashes, content_type or "application/octet-stream", checksum or "", new_meta,
            perms, public, expect_serial, if_none_match, self.clock.seconds(),
            expect=guess, label=f"{cpath}/{name}")
        return info

    def _put_object_txn(self, txn: Any, ctx: _Ctx, user: str, account: str, container: str,
                        name: str, size: int, hashes: list[str], content_type: str,
                        checksum: str, meta: dict[str, str] | None,
                        perms: Permissions | None, public: bool | None,
                        expect_serial: int | None, if_none_match: bool,
                        now: float) -> ObjectInfo:
        ctx.begin()
        store.gc_share_txn(txn)
        self._check_blocks_txn(txn, hashes)
        c = self._lock_container_txn(txn, account, container)
        access = self._access_txn(txn, user, account, container, name, detail=False)
        _require(access, "Object", write=True)
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
        version = self._new_version_txn(
            txn, ctx, c, path, None if prev is None else prev.node, current, old_meta,
            hash=merkle(hashes), size=size, type=content_type, source=None, muser=user,
            uuid=current.uuid if current is not None else str(uuidlib.uuid4()),
            checksum=checksum, map_id=map_id, meta=new_meta, mtime=now)
        token = self._sharing_txn(txn, path, perms, public)
        ctx.finish(txn)
        return ObjectInfo(account, container, name, version.serial, version.uuid,
                          version.hash, version.checksum, version.size, version.type,
                          version.mtime, version.muser, meta=dict(new_meta), hashes=hashes,
                          block_size=self.block_size, sharing=perms or None,
                          allowed_to=access.allowed_to, public=token)

    async def update_object(self, user: str, account: str, container: str, name: str,
                            meta: Mapping[str, str] | None, replace: bool,
                            permissions: Permissions | None = KEEP,
                            public: bool | None = None,
                            domain: str = store.DOMAIN) -> ObjectInfo:
        """Metadata and permission changes (POST without data).  ``meta``
        as ``update_account`` (a replacement keeps stored keys other than
        user meta and content headers); ``None`` changes no metadata and
        makes no new version.  ``permissions`` ``Permissions()`` removes
        all sharing; ``public`` ``True``/``False`` publishes/unpublishes.
        Only the owner changes permissions or publishes.

        With another ``domain`` than ``pithos``, ``meta`` changes the
        object's attributes in that domain instead (a replacement replaces
        all of them; see ``check_attributes``); the returned info's
        ``meta`` stays the ``pithos`` one."""
        self._check_path(account, container, name)
        perms = checked_permissions(permissions) if permissions is not None else None
        info: ObjectInfo = await self._write(
            "pithos.update_object", self._update_object_txn, user, account, container, name,
            dict(meta) if meta is not None else None, replace, perms, public,
            self.clock.seconds(), domain, expect={}, label=f"{account}/{container}/{name}")
        return info

    def _update_object_txn(self, txn: Any, ctx: _Ctx, user: str, account: str,
                           container: str, name: str, meta: dict[str, str] | None,
                           replace: bool, perms: Permissions | None, public: bool | None,
                           now: float, domain: str) -> ObjectInfo:
        ctx.begin()
        if meta is not None:
            store.gc_share_txn(txn)
        c = self._lock_container_txn(txn, account, container)
        access = self._access_txn(txn, user, account, container, name)
        _require(access, "Object", write=True)
        if (perms is not None or public is not None) and not access.owner:
            raise errors.Forbidden("Only the owner may change sharing or publish.")
        path = f"{c.path}/{name}"
        current = store.latest_txn(txn, path)
        if current is None or current.cluster != NORMAL:
            raise errors.NotFound("Object does not exist.")
        old_meta = store.attributes_txn(txn, current.serial)
        new_meta = old_meta
        version = current
        if meta is not None:
            domains = None
            if domain == store.DOMAIN:
                new_meta = merged_meta(old_meta, meta, replace, _replaceable)
                _check_meta(new_meta, _USER_META)
            else:
                old = store.domain_attributes_txn(txn, [current.serial], domain)
                domains = {domain: check_attributes(
                    merged_meta(old.get(current.serial, {}), meta, replace))}
            version = self._new_version_txn(
                txn, ctx, c, path, current.node, current, old_meta, hash=current.hash,
                size=current.size, type=current.type, source=current.serial, muser=user,
                uuid=current.uuid, checksum=current.checksum, map_id=current.map_id,
                meta=new_meta, mtime=now, domains=domains)
        self._sharing_txn(txn, path, perms, public)
        if perms is not None:
            access = self._access_txn(txn, user, account, container, name)
        hashes = store.map_hashes_txn(txn, version.map_id)
        info = self._info_txn(txn, access, account, container, name, version, new_meta,
                              hashes)
        ctx.finish(txn)
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
        destination's new version.

        With ``delimiter`` the source object itself may be absent (a
        virtual directory); objects under it the caller may not read (or
        move) are skipped.  ``permissions``/``public`` apply to the
        destination of ``src_name`` only.  A move onto itself keeps the
        uuid and makes a new version."""
        self._check_path(src_account, src_container, src_name)
        self._check_path(dst_account, dst_container, dst_name)
        perms = checked_permissions(permissions) if permissions is not None else None
        label = f"{dst_account}/{dst_container}/{dst_name}"
        info: ObjectInfo = await self._write(
            "pithos.move_object" if move else "pithos.copy_object", self._copy_txn, user,
            src_account, src_container, src_name, dst_account, dst_container, dst_name, move,
            version, content_type, dict(meta) if meta is not None else None, replace_meta,
            perms, public, delimiter or None, self.clock.seconds(), label=label)
        return info

    def _copy_txn(self, txn: Any, ctx: _Ctx, user: str, src_account: str,
                  src_container: str, src_name: str, dst_account: str, dst_container: str,
                  dst_name: str, move: bool, version: int | None, content_type: str | None,
                  meta: dict[str, str] | None, replace_meta: bool, perms: Permissions | None,
                  public: bool | None, delimiter: str | None, now: float) -> ObjectInfo:
        ctx.begin()
        store.gc_share_txn(txn)
        src_c, dst_c = self._lock_pair_txn(txn, src_account, src_container, dst_account,
                                           dst_container, move)
        src_access = self._access_txn(txn, user, src_account, src_container, src_name)
        dst_access = self._access_txn(txn, user, dst_account, dst_container, dst_name)
        src_path = f"{src_c.path}/{src_name}"
        latest = store.latest_txn(txn, src_path)
        source: Version | None = None
        if src_access.read:
            if version is not None and not move:
                found = store.version_txn(txn, version)
                if (found is None or latest is None or found.node != latest.node
                        or found.cluster == DELETED):
                    raise errors.NotFound(f"Object has no version {version}.")
                source = found
            elif latest is not None and latest.cluster == NORMAL:
                source = latest
        pairs: list[tuple[str, str, Version]] = []
        if source is not None:
            _require(src_access, "Object", write=move)
            pairs.append((src_name, dst_name, source))
        if delimiter:
            under = src_name if src_name.endswith(delimiter) else src_name + delimiter
            for path, child in self._all_objects_txn(txn, src_c, under):
                child_name = path[len(src_c.path) + 1:]
                if child_name == src_name:
                    continue
                if src_access.owner:
                    allowed = True
                else:
                    a = self._access_txn(txn, user, src_account, src_container, child_name)
                    allowed = a.write if move else a.read
                if not allowed:
                    continue
                target = dst_name + child_name[len(src_name):]
                check_object_name(target)
                pairs.append((child_name, target, child))
        if not pairs:
            raise errors.NotFound("Object does not exist.")
        _require(dst_access, "Object", write=True)
        if (perms is not None or public is not None) and not dst_access.owner:
            raise errors.Forbidden("Only the owner may change sharing or publish.")
        first: tuple[str, Version, dict[str, str]] | None = None
        for sname, dname, sv in pairs:
            smeta = store.attributes_txn(txn, sv.serial)
            new_meta = smeta if meta is None else merged_meta(smeta, meta, replace_meta,
                                                              _replaceable)
            _check_meta(new_meta, _USER_META)
            dpath = f"{dst_c.path}/{dname}"
            spath = f"{src_c.path}/{sname}"
            same = dpath == spath
            dprev = store.latest_txn(txn, dpath)
            dcur = dprev if dprev is not None and dprev.cluster == NORMAL else None
            old_meta = store.attributes_txn(txn, dcur.serial) if dcur is not None else {}
            nv = self._new_version_txn(
                txn, ctx, dst_c, dpath, None if dprev is None else dprev.node, dcur,
                old_meta, hash=sv.hash, size=sv.size, type=content_type or sv.type,
                source=sv.serial, muser=user,
                uuid=sv.uuid if (move or same) else str(uuidlib.uuid4()),
                checksum=sv.checksum, map_id=sv.map_id, meta=new_meta, mtime=now)
            if move and not same:
                scur = store.latest_txn(txn, spath)
                if scur is not None and scur.cluster == NORMAL:
                    self._delete_version_txn(txn, ctx, src_c, spath, scur, user, now)
            if first is None:
                first = (dname, nv, new_meta)
        assert first is not None
        dname, nv, new_meta = first
        if pairs[0][0] == src_name:
            self._sharing_txn(txn, f"{dst_c.path}/{dname}", perms, public)
            if perms is not None:
                dst_access = self._access_txn(txn, user, dst_account, dst_container, dname)
        hashes = store.map_hashes_txn(txn, nv.map_id)
        info = self._info_txn(txn, dst_access, dst_account, dst_container, dname, nv,
                              new_meta, hashes)
        ctx.finish(txn)
        return info

    def _lock_pair_txn(self, txn: Any, src_account: str, src_container: str,
                       dst_account: str, dst_container: str,
                       move: bool) -> tuple[_Container, _Container]:
        """Lock two containers in path order (the destination, and a move's
        source, for update; a copy's source for share)."""
        src = (src_account, src_container)
        dst = (dst_account, dst_container)
        if src == dst:
            c = self._lock_container_txn(txn, *dst)
            return c, c
        locked: dict[tuple[str, str], _Container] = {}
        for key in sorted([src, dst], key=lambda k: f"{k[0]}/{k[1]}"):
            mode = "update" if key == dst or move else "share"
            locked[key] = self._lock_container_txn(txn, *key, lock=mode)
        return locked[src], locked[dst]

    def _all_objects_txn(self, txn: Any, c: _Container,
                         prefix: str) -> list[tuple[str, Version]]:
        """Every current object of a container under a name prefix."""
        lo = f"{c.path}/{prefix}"
        hi = store.successor(lo)
        out: list[tuple[str, Version]] = []
        after: str | None = None
        while True:
            rows = store.object_rows_txn(txn, c.node, lo=lo, hi=hi, after=after,
                                         limit=MAX_LIST)
            out.extend(rows)
            if len(rows) < MAX_LIST:
                return out
            after = rows[-1][0]

    async def delete_object(self, user: str, account: str, container: str, name: str,
                            until: float | None = None,
                            delimiter: str | None = None) -> None:
        """Delete (a deletion-marker version; permissions and public link
        dropped; quota released), or with ``until`` purge history up to it
        (every version of any cluster with an older time; purging the
        current version removes the object), or with ``delimiter`` every
        object under ``<name><delimiter>`` too (those the caller may not
        write are skipped; the object itself may then be absent)."""
        self._check_path(account, container, name)
        await self._write("pithos.delete_object", self._delete_object_txn, user, account,
                          container, name, until, delimiter or None, self.clock.seconds(),
                          label=f"{account}/{container}/{name}")

    def _delete_object_txn(self, txn: Any, ctx: _Ctx, user: str, account: str,
                           container: str, name: str, until: float | None,
                           delimiter: str | None, now: float) -> None:
        ctx.begin()
        c = self._lock_container_txn(txn, account, container)
        access = self._access_txn(txn, user, account, container, name, detail=False)
        path = f"{c.path}/{name}"
        if until is not None:
            _require(access, "Object", write=True)
            node = store.node_txn(txn, path)
            if node is None:
                raise errors.NotFound("Object does not exist.")
            self._purge_txn(txn, ctx, c, store.purgeable_txn(txn, node=node, until=until))
            ctx.finish(txn)
            return
        targets: list[tuple[str, Version]] = []
        current = store.latest_txn(txn, path) if access.read else None
        if current is not None and current.cluster == NORMAL:
            _require(access, "Object", write=True)
            targets.append((path, current))
        if delimiter:
            under = name if name.endswith(delimiter) else name + delimiter
            for child_path, child in self._all_objects_txn(txn, c, under):
                if child_path == path:
                    continue
                if not access.owner:
                    child_name = child_path[len(c.path) + 1:]
                    if not self._access_txn(txn, user, account, container, child_name).write:
                        continue
                targets.append((child_path, child))
        if not targets:
            raise errors.NotFound("Object does not exist.")
        for target_path, version in targets:
            self._delete_version_txn(txn, ctx, c, target_path, version, user, now)
        ctx.finish(txn)

    async def public_object(self, token: str) -> ObjectInfo:
        """The latest version of the object behind a public link (no
        caller); ``NotFound`` for an unknown or withdrawn token."""
        if not token or "\x00" in token or len(token) > 256:
            raise errors.NotFound("No such public object.")
        info: ObjectInfo = await self.db.run("pithos.public_object", self._public_txn, token)
        return info

    def _public_txn(self, txn: Any, token: str) -> ObjectInfo:
        path = store.public_path_txn(txn, token)
        v = store.latest_txn(txn, path) if path is not None else None
        if path is None or v is None or v.cluster != NORMAL:
            raise errors.NotFound("No such public object.")
        account, container, name = path.split("/", 2)
        return ObjectInfo(account, container, name, v.serial, v.uuid, v.hash, v.checksum,
                          v.size, v.type, v.mtime, v.muser,
                          meta=store.attributes_txn(txn, v.serial),
                          hashes=store.map_hashes_txn(txn, v.map_id),
                          block_size=self.block_size, public=token)

    async def set_checksum(self, serial: int, checksum: str) -> None:
        """Record the MD5 of a version computed after it was created (a
        hashmap upload or a partial update).  A version gone meanwhile is
        ignored."""
        await self.db.run("pithos.set_checksum", store.set_checksum_txn, serial, checksum)

    # -- garbage collection ---------------------------------------------------

    async def collect_garbage(self, grace: float, batch: int = 1000) -> tuple[int, int]:
        """Remove blocks no version references, sparing any stored or
        refreshed within ``grace`` seconds, safely against concurrent
        uploads (see the module docstring).  Returns ``(blocks scanned,
        removed)``.  Run by one node at a time (a leader duty)."""
        cutoff = self.clock.seconds() - grace
        await self.db.run("pithos.gc_reset", store.gc_unmark_txn, None)
        after = ""
        scanned = removed = 0
        while True:
            page = list(await self.blocks.scan(after, batch))
            if not page:
                break
            scanned += len(page)
            after = page[-1]
            unused: list[str] = await self.db.run("pithos.gc_mark", store.gc_mark_txn, page)
            if unused:
                try:
                    gone = await self.blocks.delete(unused, cutoff)
                finally:
                    await self.db.run("pithos.gc_unmark", store.gc_unmark_txn, unused)
                removed += len(gone)
            if len(page) < batch:
                break
        return scanned, removed

    # -- shared steps ---------------------------------------------------------

    def _check_path(self, account: str, container: str, name: str) -> None:
        check_account_name(account)
        check_container_name(container)
        check_object_name(name)

    async def _write(self, name: str, fn: Callable[..., T], *args: Any,
                     expect: dict[tuple[str, str], int] | None = None,
                     label: str = "") -> T:
        """Run a write transaction ``fn(txn, ctx, *args)`` with its quota
        commission (see the module docstring): ``expect`` is the guess of
        the charge, which the transaction confirms or corrects."""
        async def change(attempt: Attempt) -> T:
            ctx = _Ctx(self.charger is not None, attempt.charge, attempt.serial)
            result: T = await self.db.run(name, fn, ctx, *args)
            self._projects.update(ctx.projects)
            return result

        if self.charger is None:
            return await change(Attempt(COMPONENT))
        # The transaction records the decision itself (record=False): the
        # holder may learn it later.
        return await run_charged(
            self.charger, change, expect, provisions=_provisions, name=label, record=False,
            guess=True, attempts=_ATTEMPTS, settle=Settle.LATER, refused=_refused,
            exhausted=errors.ServiceUnavailable(
                "The storage changed too often meanwhile; retry."))

    def _lock_container_txn(self, txn: Any, account: str, container: str,
                            lock: str = "update") -> _Container:
        node = store.node_txn(txn, f"{account}/{container}", lock)
        if node is None:
            raise errors.NotFound("Container does not exist.")
        return _Container(node, account, container, store.policy_txn(txn, node))

    def _check_blocks_txn(self, txn: Any, hashes: Sequence[str]) -> None:
        """Inside the transaction, under the collector's shared lock: every
        block is present and not being collected."""
        wanted = list(dict.fromkeys(h for h in hashes if h != EMPTY_HASH))
        if not wanted:
            return
        gone = set(store.gc_marked_txn(txn, wanted))
        missing_now = getattr(self.blocks, "missing_now", None)
        if missing_now is not None:
            gone.update(missing_now(wanted))
        if gone:
            raise MissingBlocks([h for h in wanted if h in gone])

    def _new_version_txn(self, txn: Any, ctx: _Ctx, c: _Container, path: str,
                         node: int | None, current: Version | None,
                         old_meta: Mapping[str, str], *, hash: str, size: int, type: str,
                         source: int | None, muser: str, uuid: str, checksum: str,
                         map_id: int | None, meta: Mapping[str, str],
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
            self._retire_txn(txn, c, current, changes)
        store.add_stats_txn(txn, c.node, changes, mtime)
        store.adjust_meta_keys_txn(txn, c.node,
                                   _key_deltas(old_meta if current else {}, meta))
        if c.quota and size > before:
            used = store.stats_txn(txn, c.node)[NORMAL].size
            if used > c.quota:
                raise errors.OverLimit(
                    f"Container quota exceeded ({used} of {c.quota} bytes).")
        ctx.charge(c.account, c.project, size - before)
        ctx.projects[c.path] = c.project
        return version

    def _retire_txn(self, txn: Any, c: _Container, old: Version,
                    changes: dict[int, tuple[int, int]]) -> None:
        """The version ``old`` is no longer current: to history, or (no
        versioning) removed at once."""
        if c.versioning == "none":
            store.delete_versions_txn(txn, [old])
        else:
            store.recluster_txn(txn, old.serial, HISTORY)
            pop, size = changes.get(HISTORY, (0, 0))
            changes[HISTORY] = (pop + 1, size + old.size)

    def _delete_version_txn(self, txn: Any, ctx: _Ctx, c: _Container, path: str,
                            current: Version, muser: str, now: float) -> None:
        """Delete the object whose current version is ``current``."""
        old_meta = store.attributes_txn(txn, current.serial)
        store.insert_version_txn(
            txn, current.node, hash=EMPTY_HASH, size=0, type="", source=current.serial,
            mtime=now, muser=muser, uuid=current.uuid, checksum="", cluster=DELETED,
            map_id=None, meta={})
        changes: dict[int, tuple[int, int]] = {NORMAL: (-1, -current.size), DELETED: (1, 0)}
        self._retire_txn(txn, c, current, changes)
        store.add_stats_txn(txn, c.node, changes, now)
        store.adjust_meta_keys_txn(txn, c.node, _key_deltas(old_meta, {}))
        store.clear_permissions_txn(txn, [path])
        store.unpublish_txn(txn, [path])
        ctx.charge(c.account, c.project, -current.size)

    def _purge_txn(self, txn: Any, ctx: _Ctx, c: _Container,
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

    def _sharing_txn(self, txn: Any, path: str, perms: Permissions | None,
                     public: bool | None) -> str | None:
        """Apply sharing/public changes; the public token afterwards (when
        ``public`` was given)."""
        if perms is not None:
            store.set_permissions_txn(txn, path, perms)
        if public is True:
            existing = store.public_tokens_txn(txn, [path]).get(path)
            if existing is not None:
                return existing
            length = self.public_token_length
            while True:
                token = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))
                if store.publish_txn(txn, path, token):
                    return token
                length += 1
        if public is False:
            store.unpublish_txn(txn, [path])
        return None

    # -- permissions ----------------------------------------------------------

    def _entries_txn(self, txn: Any, user: str,
                     permissions: Permissions | None = None) -> set[str]:
        """The sharing entries naming ``user``: itself, ``*`` and its
        groups (looked up only when ``permissions`` names a group)."""
        entries = {user, "*"}
        if permissions is None or any(":" in m for m in permissions.read + permissions.write):
            entries.update(store.memberships_txn(txn, user))
        return entries

    @staticmethod
    def _grants(permissions: Permissions, entries: set[str]) -> str | None:
        if entries.intersection(permissions.write):
            return "write"
        if entries.intersection(permissions.read):
            return "read"
        return None

    def _access_txn(self, txn: Any, user: str, account: str, container: str | None,
                    name: str | None, detail: bool = True) -> _Access:
        """What ``user`` may do on the account, container or object path
        (``detail``: also for the owner, which sharing governs it)."""
        if user == account and not detail:
            return _OWNER
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
        perms = store.permissions_txn(txn, paths)
        dirs = self._directories_txn(txn, [p for p in ancestors if p in perms]) if (
            ancestors and any(p in perms for p in ancestors)) else set()
        governing: str | None = None
        object_level = False
        for i, path in enumerate(paths):
            if path not in perms:
                continue
            if path in ancestors and path not in dirs:
                continue
            governing = path
            object_level = name is not None and i < len(ancestors) + 1
            break
        owner = user == account
        if owner:
            return _Access(True, True, True, governing,
                           perms.get(governing) if governing else None, object_level)
        if governing is None:
            return _NOBODY
        p = perms[governing]
        grant = self._grants(p, self._entries_txn(txn, user, p))
        return _Access(False, grant is not None, grant == "write", governing, p,
                       object_level)

    def _shares_under_txn(self, txn: Any, user: str, prefix: str) -> bool:
        """Whether any sharing under ``prefix`` names ``user``."""
        entries = sorted(self._entries_txn(txn, user))
        return bool(store.permissions_under_txn(txn, prefix, entries))


__all__ = ["KEEP", "Backend", "MissingBlocks", "Subdir"]
