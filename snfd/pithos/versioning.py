"""Swift's versioned writes (``X-Versions-Location``,
``X-History-Location``) over Pithos.

A container names an archive container with one of two headers, set by
``PUT`` or ``POST`` on the container and answered by its ``HEAD``/``GET``
(an empty value, ``X-Remove-Versions-Location`` or
``X-Remove-History-Location`` removes it; both at once is a 400).  The
value is kept as given, in the container's metadata beside its user
metadata (a metadata replacement does not touch it).  Then, for the
objects of that container:

- a ``PUT`` (or a copy or move onto an object, ``COPY``/``MOVE`` or
  ``X-Copy-From``/``X-Move-From``) first copies the current object into
  the archive container as ``<length><name>/<timestamp>``: ``length`` the
  three hex digits of the name's length, ``timestamp`` the current
  object's ``X-Timestamp``;
- with ``X-Versions-Location`` (stack), a ``DELETE`` puts the newest
  archived version back in the object's place and removes it from the
  archive (after a delete marker left by the history mode, it restores
  the version before the marker and removes the marker); with nothing
  archived it deletes the object;
- with ``X-History-Location``, a ``DELETE`` copies the current object
  into the archive, writes a zero-byte delete marker there (type
  ``application/x-deleted;swift_versions_deleted=1``) and deletes it.

A missing archive container, or one the caller may not write, is a 412
as in Swift; the archive copies are made as the caller.  Where Pithos
differs: Pithos keeps its own history of every object anyway
(``?version=list``), so these archives are ordinary copies that share
the blocks of the version archived (no data is copied), and both the
object and its archives keep their own Pithos histories; the settings
are read as the container's owner sees them, so a shared writer's
requests are versioned too; a Pithos hashmap ``PUT`` is versioned like
any ``PUT``, while a partial update (``POST`` with data) is not (Swift
has none).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from snfd import errors
from snfd.pithos import expiry
from snfd.pithos import headers as hdr
from snfd.pithos.middleware import Handler, container_settings
from snfd.pithos.model import ObjectInfo
from snfd.pithos.requests import Call, Reply
from snfd.pithos.rules import MAX_LIST

VERSIONS_LOCATION = "X-Versions-Location"
HISTORY_LOCATION = "X-History-Location"
DELETE_MARKER = "application/x-deleted;swift_versions_deleted=1"
PRECONDITION = "A precondition for this request was not met."


def archive_prefix(name: str) -> str:
    """Where the archived versions of object ``name`` are named from."""
    return f"{len(name):03x}{name}/"


def archive_name(name: str, t: float) -> str:
    """The archived version of ``name`` made (or deleted) at ``t``."""
    return archive_prefix(name) + hdr.x_timestamp(t)


def location_change(call: Call) -> dict[str, str] | None:
    """What a container ``PUT``/``POST`` changes in the versioning
    settings, as metadata (an empty value removes a key); ``None`` for
    nothing.  Swift's rules and messages (400, 412)."""
    versions = call.header(VERSIONS_LOCATION)
    history = call.header(HISTORY_LOCATION)
    if versions is not None and history is not None:
        if not history.strip():
            history = None
        elif versions.strip():
            raise errors.BadRequest("Only one of x-versions-location or x-history-location"
                                    " may be specified")
        else:
            versions = None
    given = versions if versions is not None else history
    if given is not None and given.strip():
        value = given.strip()
        if "/" in unquote(value):
            raise errors.PreconditionFailed("Container name cannot contain slashes")
        key = VERSIONS_LOCATION if versions is not None else HISTORY_LOCATION
        other = HISTORY_LOCATION if key == VERSIONS_LOCATION else VERSIONS_LOCATION
        return {key: value, other: ""}
    removed = any((call.header(h) or "").strip() for h in (
        "X-Remove-Versions-Location", "X-Remove-History-Location"))
    if given is not None or removed:
        return {VERSIONS_LOCATION: "", HISTORY_LOCATION: ""}
    return None


class VersionedWrites:
    """The filter: see the module docstring.

    @param backend: the ``Backend``.
    @param clock: ``seconds()`` (delete markers, expired objects).
    """

    def __init__(self, backend: Any, clock: Any):
        self.backend = backend
        self.clock = clock

    @classmethod
    def from_api(cls, api: Any) -> VersionedWrites:
        return cls(api.backend, api.backend.clock)

    def info(self) -> dict[str, Any]:
        return {"versioned_writes": {"allowed_flags": [VERSIONS_LOCATION.lower(),
                                                       HISTORY_LOCATION.lower()]}}

    async def __call__(self, call: Call, app: Handler) -> Reply:
        t = call.target
        if t.level == "container" and call.method in ("PUT", "POST"):
            change = location_change(call)
            reply = await app(call)
            if change is not None and reply.code < 300:
                assert t.account is not None and t.container is not None
                await self.backend.update_container(call.user, t.account, t.container,
                                                    change, False, None)
            return reply
        if t.level != "object" or call.anonymous:
            return await app(call)
        if call.method == "DELETE" and not call.has("until") and \
                not call.has("delimiter"):
            return await self._delete(call, app)
        destination = self._destination(call)
        if destination is not None:
            account, container, name = destination
            settings = await self._settings(call, account, container)
            if settings is not None:
                await self._archive(call.user, account, container, name, settings[1])
        return await app(call)

    def _destination(self, call: Call) -> tuple[str, str, str] | None:
        """The object a write replaces: the target of a ``PUT``, the
        destination of a ``COPY``/``MOVE``."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        if call.method == "PUT":
            return t.account, t.container, t.name
        if call.method in ("COPY", "MOVE"):
            destination = call.header("Destination")
            if destination is None:
                return None
            try:
                container, name = hdr.split_object_path(destination, "Destination")
                account = hdr.unquoted(call.header("Destination-Account") or "",
                                       "Destination-Account").strip() or t.account
            except errors.Fault:
                return None  # the handler refuses it
            return account, container, name
        return None

    async def _settings(self, call: Call, account: str, container: str) -> tuple[str, str] | None:
        """``(mode header, archive container)`` of a versioned container."""
        info = await container_settings(call, self.backend, account, container)
        if info is None:
            return None
        for key in (VERSIONS_LOCATION, HISTORY_LOCATION):
            value = info.meta.get(key)
            if value:
                return key, unquote(value).split("/")[0]
        return None

    async def _current(self, user: str, account: str, container: str,
                       name: str) -> ObjectInfo | None:
        try:
            info: ObjectInfo = await self.backend.object(user, account, container, name)
        except errors.NotFound:
            return None
        if expiry.expired(info.meta, self.clock.seconds()):
            return None
        return info

    async def _archive(self, user: str, account: str, container: str, name: str,
                       archive: str) -> None:
        """Copy the current object (if any) into ``archive``."""
        current = await self._current(user, account, container, name)
        if current is None:
            return
        try:
            await self.backend.copy_object(user, account, container, name, account, archive,
                                           archive_name(name, current.mtime))
        except (errors.NotFound, errors.Forbidden):
            raise errors.PreconditionFailed(PRECONDITION) from None

    async def _delete(self, call: Call, app: Handler) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        settings = await self._settings(call, t.account, t.container)
        if settings is None:
            return await app(call)
        mode, archive = settings
        user = call.user
        if mode == HISTORY_LOCATION:
            await self._archive(user, t.account, t.container, t.name, archive)
            try:
                await self.backend.put_object(
                    user, t.account, archive, archive_name(t.name, self.clock.seconds()),
                    size=0, hashes=[], content_type=DELETE_MARKER, meta={})
            except (errors.NotFound, errors.Forbidden):
                raise errors.PreconditionFailed(PRECONDITION) from None
            return await app(call)
        return await self._pop(call, app, archive)

    async def _pop(self, call: Call, app: Handler, archive: str) -> Reply:
        """Stack mode: put the newest archived version back."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        try:
            found = await self.backend.objects(user, t.account, archive,
                                               prefix=archive_prefix(t.name), reverse=True,
                                               limit=MAX_LIST)
        except errors.NotFound:
            return await app(call)
        except errors.Forbidden:
            raise errors.PreconditionFailed(PRECONDITION) from None
        entries = [e for e in found if isinstance(e, ObjectInfo)]
        for i, entry in enumerate(entries):
            if entry.type == DELETE_MARKER:
                if await self._current(user, t.account, t.container, t.name) is not None:
                    break  # the object was written after the marker: delete it
                for older in entries[i + 1:]:
                    if older.type == DELETE_MARKER:
                        break
                    if await self._restore(user, t, archive, older.name):
                        await self._drop(user, t.account, archive, older.name)
                        break
                await self._drop(user, t.account, archive, entry.name)
                return Reply(204)
            if await self._restore(user, t, archive, entry.name):
                await self._drop(user, t.account, archive, entry.name)
                return Reply(204)
        return await app(call)

    async def _restore(self, user: str, t: Any, archive: str, archived: str) -> bool:
        """Copy ``archived`` over the object; ``False`` if it is gone."""
        try:
            await self.backend.copy_object(user, t.account, archive, archived, t.account,
                                           t.container, t.name)
        except errors.NotFound:
            return False
        except errors.Forbidden:
            raise errors.PreconditionFailed(PRECONDITION) from None
        return True

    async def _drop(self, user: str, account: str, archive: str, archived: str) -> None:
        try:
            await self.backend.delete_object(user, account, archive, archived)
        except errors.NotFound:
            pass  # it existed long enough to be restored


__all__ = ["DELETE_MARKER", "HISTORY_LOCATION", "VERSIONS_LOCATION", "VersionedWrites",
           "archive_name", "archive_prefix", "location_change"]
