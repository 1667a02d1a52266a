"""Swift's object versioning (``X-Versions-Enabled``, ``?versions``,
``?version-id``) over Pithos's own version history.

A container ``PUT`` or ``POST`` with ``X-Versions-Enabled`` turns
versioning on (a true value: ``true``, ``1``, ``yes``, ``on``, ``t``,
``y``) or off (anything else).  The flag is kept in the container's
metadata as ``True``/``False`` beside its user metadata (a metadata
replacement does not touch it) and answered by the container's
``HEAD``/``GET``.  Once set, either way, the container is *versioned* and
stays so, as in Swift.  The flag is refused (400, Swift's message) on a
container using the legacy ``X-Versions-Location``/``X-History-Location``
(``snfd.pithos.versioning``) and beside a non-empty one of those in the
same request; setting one of those on a versioned container is refused
too (400).

On a versioned container:

- an object's version id (``X-Object-Version-Id``) is its Pithos version
  serial, as text; ``GET``/``HEAD`` answer it, and so does a ``PUT``
  while versioning is enabled;
- ``GET``/``HEAD ?version-id=<id>`` read that version (Pithos
  ``?version=<id>``); a deletion marker answers 404 with the id and the
  marker's type; ``COPY ?version-id=<id>`` copies that version
  (``X-Source-Version``); ``PUT ?version-id=<id>`` with an empty body
  makes that version current again; ``POST`` with it is a 400;
- ``DELETE ?version-id=<id>`` removes that one version for good
  (``Backend.remove_version``), answering the id and
  ``X-Object-Current-Version-Id`` (``null`` when the object is left
  without a current version: removing the current version does not bring
  back the one before, as in Swift);
- a plain ``DELETE`` deletes the object leaving a deletion marker, whose
  id it answers while versioning is enabled;
- a container ``GET ?versions`` lists every version of every object
  (JSON only, else 406): ``name``, ``version_id``, ``is_latest``,
  ``bytes``, ``hash``, ``last_modified``, ``content_type``, deletion
  markers with type ``application/x-deleted;swift_versions_deleted=1``;
  by name, newest first within a name, with ``prefix``, ``delimiter``,
  ``limit`` and ``marker``/``version_marker`` paging;
- a container ``DELETE`` is a 409 while any version (markers included)
  remains.

Where Pithos differs from Swift:

- Pithos keeps the history of every object whatever the flag says
  (unless the container's Pithos policy ``X-Container-Policy-Versioning``
  is ``none``; enabling sets it back to ``auto``).  So a container with
  versioning disabled, or never enabled, still keeps every version and a
  ``DELETE`` there still leaves a (Pithos) deletion marker; ``?versions``
  lists that history on any container.  Swift's ``null`` version id (an
  object written while versioning was off) does not exist: every version
  has a serial, ``GET``/``HEAD`` answer it even when versioning is
  disabled, and ``version-id=null`` answers 404.
- Version ids are increasing serials, not timestamps; a listing orders a
  name's versions by serial.  A ``PUT ?version-id`` makes a new version
  holding that version's content and metadata (a new id, answered), not
  a link to the old one.
- History is the owner's (``snfd.pithos.permissions.PAST_VERSIONS``):
  anyone else with access reads and removes only the current version by
  its id, and ``?versions`` is a 403 for them.
- An object ``POST`` makes a new Pithos version (metadata changes are
  versions in Pithos), listed by ``?versions``.
- A ``DELETE`` of an object that does not exist is a 404 that leaves no
  marker (Swift writes one and answers 404 with its id).
- ``X-Container-Bytes-Used`` and the account's counts are the current
  versions' only (Swift adds its hidden versions container's bytes);
  ``reverse`` and ``end_marker`` are not honoured by ``?versions``
  (Swift honours ``reverse``).
"""

from __future__ import annotations

from typing import Any

from snfd import errors
from snfd.pithos import store
from snfd.pithos.headers import iso_date
from snfd.pithos.listings import json_reply
from snfd.pithos.middleware import Handler, container_settings
from snfd.pithos.model import VersionEntry
from snfd.pithos.requests import TRUE, Call, Reply
from snfd.pithos.uploads import Uploads, has_body, streamed
from snfd.pithos.versioning import DELETE_MARKER, HISTORY_LOCATION, VERSIONS_LOCATION

ENABLED = "X-Versions-Enabled"
VERSION_ID = "X-Object-Version-Id"
NULL = "null"
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
LEGACY = ("Cannot enable object versioning on a container that is already using"
          " the legacy versioned writes feature.")
NOT_LEGACY = ("Cannot use legacy versioned writes on a container that uses object"
              " versioning.")
UNVERSIONED = "version-aware operations require that the container is versioned"
_ALL = 2 ** 62  # above any serial: a version_marker of null starts before them all


class NotAcceptable(errors.Fault):
    code, name = 406, "notAcceptable"


def version_serial(value: str) -> int:
    """The serial a version id names; 400 (Swift's message) if none."""
    if not value.isdigit() or len(value) > 18:
        raise errors.BadRequest("Invalid version parameter")
    return int(value)


def listing_entry(entry: VersionEntry) -> dict[str, Any]:
    """One version as ``?versions`` lists it."""
    info = entry.info
    if info.deleted:
        return {"name": info.name, "version_id": str(info.serial),
                "is_latest": entry.latest, "bytes": 0, "hash": EMPTY_MD5,
                "last_modified": iso_date(info.mtime), "content_type": DELETE_MARKER}
    return {"name": info.name, "version_id": str(info.serial), "is_latest": entry.latest,
            "bytes": info.size, "hash": info.checksum or info.hash,
            "last_modified": iso_date(info.mtime), "content_type": info.type}


def _header(reply: Reply, name: str) -> str | None:
    for key, value in reply.headers:
        if key.lower() == name.lower():
            return value
    return None


class ObjectVersioning:
    """The filter: see the module docstring.

    @param backend: the ``Backend``.
    @param uploads: the API's ``Uploads`` (a refused request's body).
    """

    def __init__(self, backend: Any, uploads: Uploads):
        self.backend = backend
        self.uploads = uploads

    @classmethod
    def from_api(cls, api: Any) -> ObjectVersioning:
        return cls(api.backend, api.uploads)

    def info(self) -> dict[str, Any]:
        return {"object_versioning": {}}

    async def __call__(self, call: Call, app: Handler) -> Reply:
        t = call.target
        if t.level == "container":
            return await self._container(call, app)
        if t.level == "object":
            return await self._object(call, app)
        return await app(call)

    async def _flag(self, call: Call, account: str, container: str) -> str | None:
        """The container's stored ``X-Versions-Enabled`` (``None``: never
        versioned, or no such container)."""
        info = await container_settings(call, self.backend, account, container)
        return None if info is None else info.meta.get(ENABLED)

    # -- containers -----------------------------------------------------------

    async def _container(self, call: Call, app: Handler) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None
        if call.method in ("PUT", "POST"):
            return await self._settings(call, app)
        if call.method == "GET" and call.has("versions"):
            return await self._listing(call, app)
        if call.method == "DELETE" and not call.has("until") and not call.has("delimiter") \
                and not call.anonymous:
            await self._check_empty(call)
            return await app(call)
        reply = await app(call)
        if call.method in ("GET", "HEAD") and reply.code < 300 and \
                _header(reply, ENABLED) is None:
            # The owner's answer holds the metadata; anyone else who may
            # read the container is told the flag too, as by Swift.
            flag = await self._flag(call, t.account, t.container)
            if flag is not None:
                reply.headers.append((ENABLED, flag))
        return reply

    async def _settings(self, call: Call, app: Handler) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None
        given = call.header(ENABLED)
        legacy = [(call.header(h) or "").strip() for h in (VERSIONS_LOCATION,
                                                            HISTORY_LOCATION)]
        if given is None:
            if any(legacy) and await self._flag(call, t.account, t.container) is not None:
                raise errors.BadRequest(NOT_LEGACY)
            return await app(call)
        if any(legacy):
            raise errors.BadRequest(LEGACY)
        info = await container_settings(call, self.backend, t.account, t.container)
        if info is not None and any(info.meta.get(h) for h in (VERSIONS_LOCATION,
                                                               HISTORY_LOCATION)):
            raise errors.BadRequest(LEGACY)
        enabled = given.strip().lower() in TRUE
        reply = await app(call)
        if reply.code < 300:
            await self.backend.update_container(
                call.user, t.account, t.container, {ENABLED: "True" if enabled else "False"},
                False, {"versioning": "auto"} if enabled else None)
        return reply

    async def _check_empty(self, call: Call) -> None:
        """Swift's 409 for a versioned container that keeps versions."""
        t = call.target
        assert t.account is not None and t.container is not None
        if await self._flag(call, t.account, t.container) is None:
            return
        try:
            left = await self.backend.history(call.user, t.account, t.container, limit=1)
        except errors.Fault:
            return  # the handler refuses the caller
        if left:
            raise errors.Conflict("Delete all versions before deleting container.")

    async def _listing(self, call: Call, app: Handler) -> Reply:
        """``GET ?versions``: the container's headers, every version."""
        t = call.target
        assert t.account is not None and t.container is not None
        if call.fmt(default="json") != "json":
            raise NotAcceptable("Not Acceptable")
        marker = call.text_param("marker") or None
        version_marker = call.text_param("version_marker")
        after: tuple[str, int] | None = None
        if marker is not None:
            if version_marker is None:
                after = (marker, 0)
            elif version_marker == NULL:
                after = (marker, _ALL)
            elif version_marker.isdigit() and len(version_marker) <= 18:
                after = (marker, int(version_marker))
            else:
                raise errors.BadRequest("invalid version_marker param")
        elif version_marker is not None:
            raise errors.BadRequest("version_marker param requires marker")
        delimiter = call.text_param("delimiter") or None
        if delimiter is not None and set(delimiter) & set("0123456789."):
            raise errors.BadRequest("invalid delimiter param")
        prefix = call.text_param("prefix") or ""
        limit = call.limit()
        # The handler answers the container's headers (and refuses who may
        # not see it); the listing is this filter's.
        args = {k: v for k, v in call.args.items() if k != "versions"}
        args.update(limit="0", format="json")
        head = await app(Call(call.request, call.method, t, args))
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            want = limit - len(out)
            page = await self.backend.history(call.user, t.account, t.container,
                                              prefix=prefix, after=after, limit=want)
            for entry in page:
                name = entry.info.name
                after = (name, entry.info.serial)
                idx = name.find(delimiter, len(prefix)) if delimiter else -1
                if delimiter is not None and idx >= 0:
                    sub = name[:idx + len(delimiter)]
                    if sub != marker:
                        out.append({"subdir": sub})
                    nxt = store.successor(sub)
                    if nxt is None:
                        return json_reply(out, headers=head.headers)
                    after = (nxt, _ALL)
                    break  # the next page starts past the subdir
                out.append(listing_entry(entry))
            else:
                if len(page) < want:
                    break
        return json_reply(out[:limit], headers=head.headers)

    # -- objects --------------------------------------------------------------

    async def _object(self, call: Call, app: Handler) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        version_id = call.get("version-id")
        if version_id:
            return await self._version_call(call, app, version_id)
        if call.method not in ("GET", "HEAD", "PUT", "DELETE"):
            return await app(call)
        flag = await self._flag(call, t.account, t.container)
        if flag is None:
            return await app(call)
        enabled = flag.lower() in TRUE
        if call.method == "DELETE":
            reply = await app(call)
            if enabled and not call.has("until") and not call.has("delimiter"):
                marker = await self._newest(call)
                if marker is not None:
                    reply.headers.append((VERSION_ID, marker))
            return reply
        reply = await app(call)
        if reply.code < 300 and (enabled or call.method != "PUT"):
            serial = _header(reply, "X-Object-Version")
            if serial is not None:
                reply.headers.append((VERSION_ID, serial))
        return reply

    async def _newest(self, call: Call) -> str | None:
        """The id of the object's newest version (after a ``DELETE``, its
        marker), when the caller may see the history."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        try:
            found = await self.backend.history(call.user, t.account, t.container,
                                               prefix=t.name, limit=1)
        except errors.Fault:
            return None
        if found and found[0].info.name == t.name and found[0].info.deleted:
            return str(found[0].info.serial)
        return None

    async def _version_call(self, call: Call, app: Handler, version_id: str) -> Reply:
        """A request naming one version (``?version-id``)."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        try:
            if call.method == "POST":
                raise errors.BadRequest("POST to a specific version is not allowed")
            if call.method not in ("GET", "HEAD", "DELETE", "PUT", "COPY"):
                return await app(call)
            if version_id != NULL and await self._flag(call, t.account, t.container) is None:
                raise errors.BadRequest(UNVERSIONED)
            if version_id == NULL:
                raise errors.NotFound("Not Found")  # every Pithos version has an id
            serial = version_serial(version_id)
            if call.method == "DELETE":
                return await self._remove(call, serial)
            if call.method == "PUT":
                return await self._restore(call, serial)
        finally:
            if call.method in ("PUT", "POST"):
                await self.uploads.settle(call.request)
        if call.method == "COPY":
            call.request.requestHeaders.setRawHeaders(b"x-source-version",
                                                      [str(serial).encode("ascii")])
            return await app(call)
        try:
            info = await self.backend.object(call.user, t.account, t.container, t.name,
                                             serial)
        except errors.Fault:
            info = None  # the handler answers it
        if info is not None and info.deleted:
            raise errors.NotFound("Not Found", headers={VERSION_ID: version_id,
                                                        "Content-Type": DELETE_MARKER})
        call.args["version"] = str(serial)
        reply = await app(call)
        if reply.code < 300:
            reply.headers.append((VERSION_ID, version_id))
        return reply

    async def _current_id(self, call: Call) -> str:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        try:
            info = await self.backend.object(call.user, t.account, t.container, t.name)
        except errors.Fault:
            return NULL
        return str(info.serial)

    async def _remove(self, call: Call, serial: int) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        await self.backend.remove_version(call.user, t.account, t.container, t.name, serial)
        return Reply(204, [(VERSION_ID, str(serial)),
                           ("X-Object-Current-Version-Id", await self._current_id(call))])

    async def _restore(self, call: Call, serial: int) -> Reply:
        """``PUT ?version-id``: that version's content current again."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        length = (call.header("Content-Length") or "").strip()
        if call.header("Transfer-Encoding") is None and not length:
            raise errors.LengthRequired("Length Required")
        if length not in ("", "0") or streamed(call.request) or has_body(call.request):
            raise errors.BadRequest("PUT version-id requests require a zero byte body")
        source = await self.backend.object(call.user, t.account, t.container, t.name, serial)
        if source.deleted:
            raise errors.NotFound("The specified version does not exist")
        info = await self.backend.copy_object(call.user, t.account, t.container, t.name,
                                              t.account, t.container, t.name,
                                              version=serial)
        return Reply(201, [("ETag", info.checksum or info.hash),
                           ("X-Object-Version", str(info.serial)),
                           (VERSION_ID, str(info.serial))])


__all__ = ["DELETE_MARKER", "ENABLED", "VERSION_ID", "ObjectVersioning", "listing_entry",
           "version_serial"]
