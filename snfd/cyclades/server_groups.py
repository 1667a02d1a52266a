"""Server groups (Nova's ``os-server-groups``): a project's named set of
servers with one placement policy, and how creates honour it.

A group belongs to the project it was made in (the caller's token scope,
else the caller's base project); every member of that project sees and
may delete it, as in Nova, and so does its maker.  A server joins a group
only when it is created (the ``group`` scheduler hint) and leaves it when
it is deleted; deleting a group leaves its servers, in no group.  A
project holds at most ``MAX_GROUPS`` groups and a group ``MAX_MEMBERS``
live servers (Nova's default quotas; 403 past them).

Placement.  Nova's *host* is a backend here (a Ganeti cluster: what
``OS-EXT-SRV-ATTR:host`` shows) and its *hypervisor* a Ganeti node, so a
policy is honoured at both levels:

- ``affinity``: the allocator takes only the backend of the members (a
  refusal, 503, when it cannot host another server), and Ganeti puts the
  instance on a member's primary node (``pnode``, and ``snode`` for DRBD,
  as RAPI reports that member now).
- ``anti-affinity``: the allocator prefers backends without members;
  inside a backend the instance carries the exclusion tag
  ``snf-group:<group id>`` (the cluster tag ``htools:iextags:snf-group``
  is added once, the create waiting for that job), so Ganeti's allocator
  puts no two members on one node, and fails the create (the server goes
  to ERROR, like Nova's "no valid host") when no node is left.
- ``soft-affinity`` / ``soft-anti-affinity`` (Nova 2.15): preferences of
  the allocator only, never a refusal.

An anti-affinity group may carry Nova 2.64's rule ``max_server_per_host``;
it is kept and shown, and placement stays as above (at most one member
per Ganeti node, whatever the rule allows).

Creates into one group are serialised by a lock on the group's row, so
the member count and the members' backends the allocator sees are
current.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from snfd import errors
from snfd.cyclades import store
from snfd.cyclades.model import GROUP_POLICIES, GanetiBackend, ServerGroup

MAX_GROUPS = 10
MAX_MEMBERS = 10
MAX_NAME = 255
#: The prefix of the Ganeti exclusion tags of anti-affinity groups.
EXCLUSION_PREFIX = "snf-group"
EXCLUSION_CLUSTER_TAG = f"htools:iextags:{EXCLUSION_PREFIX}"


def exclusion_tag(group_id: str) -> str:
    """The Ganeti instance tag that keeps an anti-affinity group's members
    on different nodes."""
    return f"{EXCLUSION_PREFIX}:{group_id}"


def placement_filter(candidates: Sequence[GanetiBackend], policy: str,
                     member_backends: Collection[int]) -> list[GanetiBackend]:
    """The allocator's ``candidates`` a new member of a group with
    ``policy`` may go to, given the backends its live members are on."""
    mine = [b for b in candidates if b.id in member_backends]
    others = [b for b in candidates if b.id not in member_backends]
    if policy == "affinity":
        return mine if member_backends else list(candidates)
    if policy == "soft-affinity":
        return mine or others
    return others or list(candidates)


def check_policy(policy: Any, allowed: Collection[str] = GROUP_POLICIES) -> str:
    if policy not in allowed:
        raise errors.BadRequest(f"Invalid server group policy {str(policy)[:40]!r}:"
                                f" one of {', '.join(allowed)}.")
    return str(policy)


def check_group_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise errors.BadRequest(f"A server group's name is 1 to {MAX_NAME} characters,"
                                " not only blanks.")
    return name


class ServerGroups:
    """Server groups of projects.

    @param db: the node's ``IDatabase``.
    """

    def __init__(self, db: Any):
        self._db = db

    async def create(self, user: str, project: str, name: Any, policy: str,
                     rules: Mapping[str, int] | None = None) -> ServerGroup:
        """A new group of ``project`` (403 past ``MAX_GROUPS`` there) with
        its policy's ``rules`` (checked by the caller)."""
        group: ServerGroup = await self._db.run(
            "cyclades.create_group", _create_txn, user, project, check_group_name(name),
            check_policy(policy), dict(rules or {}))
        return group

    async def visible(self, user: str, projects: Collection[str], admin: bool = False,
                      all_projects: bool = False) -> list[ServerGroup]:
        """The groups of ``projects`` and those ``user`` made (all of them
        for an administrator asking ``all_projects``)."""
        if admin and all_projects:
            every: list[ServerGroup] = await self._db.run("cyclades.groups", store.groups_txn)
            return every
        found: list[ServerGroup] = await self._db.run(
            "cyclades.groups", store.groups_txn, projects=projects, userid=user)
        return found

    async def get(self, user: str, projects: Collection[str], group_id: str,
                  admin: bool = False) -> ServerGroup:
        """One group the caller may see; 404 otherwise."""
        group: ServerGroup | None = await self._db.run("cyclades.group", store.group_txn,
                                                       group_id)
        if group is None or not (admin or group.userid == user or group.project in projects):
            raise errors.NotFound(f"Server group {group_id[:64]} could not be found.")
        return group

    async def delete(self, user: str, projects: Collection[str], group_id: str,
                     admin: bool = False) -> None:
        """Delete a group the caller may see (its servers stay)."""
        await self.get(user, projects, group_id, admin)
        await self._db.run("cyclades.delete_group", store.delete_group_txn, group_id)

    async def usage(self, project: str) -> int:
        """How many groups ``project`` holds."""
        count: int = await self._db.run("cyclades.count_groups", store.count_groups_txn,
                                        project)
        return count


def _create_txn(txn: Any, user: str, project: str, name: str, policy: str,
                rules: Mapping[str, int]) -> ServerGroup:
    store.lock_groups_txn(txn, project)
    if store.count_groups_txn(txn, project) >= MAX_GROUPS:
        raise errors.Forbidden("Quota exceeded, too many server groups.")
    return store.create_group_txn(txn, user, project, name, policy, rules)


def join_txn(txn: Any, group_id: str) -> tuple[ServerGroup, dict[int, int | None]]:
    """In a create's transaction: lock the group (400 when it is gone),
    check it has room (403) and return it with its members' backends."""
    group = store.group_txn(txn, group_id, for_update=True)
    if group is None:
        raise errors.BadRequest(f"Server group {group_id[:64]} could not be found.")
    members = store.member_backends_txn(txn, group_id)
    if len(members) >= MAX_MEMBERS:
        raise errors.Forbidden("Quota exceeded, too many servers in group.")
    return group, members
