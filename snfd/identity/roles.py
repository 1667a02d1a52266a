"""Keystone's roles over the Astakos model: pure rules, no I/O.

The roles are fixed: ``admin``, ``manager``, ``member``, ``reader``,
``service`` and ``ResellerAdmin`` (Swift's reseller administrator: the
object store lets it set account quotas).
``admin`` implies ``manager``, which implies ``member``, which implies
``reader`` (the implication rules Keystone's bootstrap creates), so a token
carries the closure of what was granted.  ``manager`` (a project's
manager, in Keystone's defaults since 2024.1) grants nothing beyond
``member`` in snfd's services yet.  ``admin`` is the Astakos administrator flag of the user
(global: it holds on every project of the user); the others are stored on
the user's membership of a project, or granted to a group on a project.
"""

from __future__ import annotations

from collections.abc import Iterable

from snfd.identity.catalog import stable_id

ADMIN = "admin"
MANAGER = "manager"
MEMBER = "member"
READER = "reader"
SERVICE = "service"
RESELLER_ADMIN = "ResellerAdmin"

#: Every role, in the order they are listed.
NAMES = (ADMIN, MANAGER, MEMBER, READER, SERVICE, RESELLER_ADMIN)
#: The roles a membership (or a group's grant) can hold.
PROJECT_ROLES = (MANAGER, MEMBER, READER, SERVICE, RESELLER_ADMIN)

#: The roles a user can hold on the system (``admin`` there is the
#: administrator flag).
SYSTEM_ROLES = (ADMIN, MEMBER, READER)

#: Direct implication rules: prior role -> the roles it implies.
IMPLIES: dict[str, tuple[str, ...]] = {ADMIN: (MANAGER,), MANAGER: (MEMBER,),
                                       MEMBER: (READER,)}

DESCRIPTIONS = {
    ADMIN: "An Astakos administrator (global).",
    MANAGER: "Manages the project (a member, for now).",
    MEMBER: "A member of the project: uses its quota.",
    READER: "Reads the project's resources.",
    SERVICE: "A service user.",
    RESELLER_ADMIN: "Swift's reseller administrator: sets the object store's account"
                    " quotas.",
}


def role_id(name: str) -> str:
    """The role's stable id (the same on every node and in every release)."""
    return stable_id("role", name)


def by_id(rid: str) -> str | None:
    """The name of the role with this id (or ``None``)."""
    return next((n for n in NAMES if role_id(n) == rid), None)


def by_name(name: str) -> str | None:
    """The role of this name, compared without regard to case as Keystone
    does (or ``None``)."""
    return next((n for n in NAMES if n.lower() == name.lower()), None)


def closure(names: Iterable[str]) -> list[str]:
    """The granted roles and every role they imply, in ``NAMES`` order."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(IMPLIES.get(name, ()))
    return [n for n in NAMES if n in found]


def implied_by(name: str) -> list[str]:
    """Roles implied by ``name`` (directly or not), without ``name``."""
    return [n for n in closure([name]) if n != name]
