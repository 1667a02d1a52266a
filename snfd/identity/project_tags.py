"""Keystone's project tags: the rules of a tag, the list filters, and the
changes (each in one transaction, on the project's locked row).

A tag is a non-empty string of at most 255 characters without ``/`` or
``,``; a project has at most 80, each once, in the order they were set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from snfd import errors
from snfd.identity import project_store
from snfd.identity.project_store import ALIVE_STATES, Project

MAX_TAGS = 80
MAX_TAG_LENGTH = 255


def check_tag(tag: Any) -> str:
    if (not isinstance(tag, str) or not tag or len(tag) > MAX_TAG_LENGTH
            or "/" in tag or "," in tag):
        raise errors.BadRequest(f"A tag is a string of 1 to {MAX_TAG_LENGTH} characters"
                                f" without '/' or ',': {tag!r} is not.")
    return tag


def check_tags(tags: Any) -> list[str]:
    """A whole list of tags (duplicates kept once); 400 when invalid."""
    if not isinstance(tags, list):
        raise errors.BadRequest("tags must be a list of strings.")
    found = list(dict.fromkeys(check_tag(t) for t in tags))
    if len(found) > MAX_TAGS:
        raise errors.BadRequest(f"A project has at most {MAX_TAGS} tags.")
    return found


def matches(project: Project, query: dict[str, str | None]) -> bool:
    """Whether the project passes Keystone's tag filters: ``tags`` (all of
    them), ``tags-any`` (one of them), ``not-tags`` (not all of them),
    ``not-tags-any`` (none of them); each a comma-separated list."""
    have = set(project.tags)

    def wanted(key: str) -> set[str] | None:
        value = query.get(key)
        return None if value is None else {t for t in value.split(",") if t}

    every, some = wanted("tags"), wanted("tags-any")
    not_every, not_any = wanted("not-tags"), wanted("not-tags-any")
    return ((every is None or every <= have)
            and (some is None or bool(some & have))
            and (not_every is None or not not_every <= have)
            and (not_any is None or not not_any & have))


def change_txn(txn: Any, project_id: str, replace: Sequence[str] | None = None,
               add: str | None = None, remove: str | None = None) -> Project:
    """Replace the tags, add one or remove one (``NotFound`` when absent)."""
    project = project_store.project_txn(txn, project_id, for_update=True)
    if project is None or project.state not in ALIVE_STATES:
        raise errors.NotFound(f"Could not find project: {project_id}.")
    tags = list(project.tags if replace is None else replace)
    if add is not None and add not in tags:
        if len(tags) >= MAX_TAGS:
            raise errors.BadRequest(f"A project has at most {MAX_TAGS} tags.")
        tags.append(add)
    if remove is not None:
        if remove not in tags:
            raise errors.NotFound(f"Could not find tag {remove!r} on project {project_id}.")
        tags.remove(remove)
    project_store.set_project_tags_txn(txn, project.id, tags)
    found = project_store.project_txn(txn, project.id)
    assert found is not None
    return found
