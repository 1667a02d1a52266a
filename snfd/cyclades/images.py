"""The image registry (Synnefo's Plankton backend): images are files of the
object store with image metadata (reference/synnefo-apis.md 3.2).

An image is the current version of a file of the object store
(``IObjectStore``) carrying attributes in its ``plankton`` domain, whose
keys are those of Synnefo (``plankton:<key>``); the object store keeps
them across new versions of the file (new content too):

- ``id`` is the object's uuid, ``location`` ``pithos://<account>/
  <container>/<path>`` (components URL-quoted), ``owner`` the account,
  ``size`` its bytes, ``checksum`` and ``mapfile`` its Merkle hash;
- ``plankton:name``, ``:disk_format``, ``:container_format``, ``:status``,
  ``:description``, ``:volume_id`` hold the fixed metadata,
  ``plankton:created_at`` the registration time (epoch seconds) and
  ``plankton:property:<key>`` each property;
- ``is_public`` is a ``*`` in the object's own read sharing; ``members``
  the other entries of that read list (not the owner); so members and
  public images follow the object store's sharing rules exactly.  The
  object store lets ``*`` absorb the other entries of a list: a public
  image has no members, and making an image public drops them;
- ``status`` is the stored one, AVAILABLE when none is stored (the
  object store has no unavailable maps); ``is_snapshot`` marks objects
  of the ``snapshots`` container; ``updated_at`` is the version's time.

Visibility: a user sees an image when the object store lets the user read
the object (owner, a read or write entry naming the user, one of the
user's groups or ``*``, on the object or an ancestor directory object,
the container or the account).  Anything else is ``NotFound`` (404), as
in the object store, which alone decides.  Only the owner changes an
image (``Forbidden``, 403, for anybody else who can see it).  Every change
goes through the object store and makes a new version of the file (a
change of members or of ``is_public`` alone changes its sharing only);
registering never copies data.
"""

from __future__ import annotations

import builtins
import datetime
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import attrs

from snfd import errors
from snfd.interfaces import IObjectStore, Sharing, StoredObject

# Where image metadata lives: this attribute domain of the file, these keys.
DOMAIN = "plankton"
PREFIX = "plankton:"
# The attribute whose presence makes a file an image.
NAME_KEY = PREFIX + "name"

DISK_FORMATS = ("diskdump", "extdump", "ntfsdump")
CONTAINER_FORMATS = ("aki", "ari", "ami", "bare", "ovf")
DEFAULT_DISK_FORMAT = "diskdump"
DEFAULT_CONTAINER_FORMAT = "bare"
STATUSES = ("AVAILABLE", "UNAVAILABLE", "ERROR", "DELETED")
# The statuses only Glance v2 sets (snfd.cyclades.glance): created without
# data, data staged, staged data being imported, deactivated by its owner or
# an administrator.
GLANCE_STATUSES = ("QUEUED", "UPLOADING", "IMPORTING", "DEACTIVATED")
ALL_STATUSES = STATUSES + GLANCE_STATUSES
STORE = "pithos"
SNAPSHOTS_CONTAINER = "snapshots"

SORT_KEYS = ("id", "name", "status", "size", "disk_format", "container_format",
             "created_at", "updated_at")
SORT_DIRS = ("asc", "desc")
FILTERS = ("name", "container_format", "disk_format", "status", "size_min", "size_max",
           "owner")

PROPERTY_PREFIX = "property:"
# The reference's limits on a stored key (prefixes included) and value,
# and the object store's on the keys of a domain.
MAX_KEY_LENGTH = 128 - len("plankton") - len(PROPERTY_PREFIX)
MAX_VALUE_LENGTH = 256
MAX_KEYS = 32

# Glance's own state of an image (snfd.cyclades.glance), one JSON object
# so that it takes one of the domain's 32 keys; and the id a Glance client
# chose, when it chose one (the image's id instead of the file's uuid).
GLANCE_KEY = PREFIX + "glance"
ID_KEY = PREFIX + "id"
VISIBILITIES = ("public", "community", "shared", "private")
MEMBER_STATUSES = ("pending", "accepted", "rejected")

# What register() and update() accept.  ``owner`` is accepted and
# ignored: the owner is the file's account.
REGISTER_KEYS = frozenset({"name", "id", "store", "disk_format", "container_format", "size",
                           "checksum", "is_public", "owner", "properties", "status",
                           "description", "volume_id"})
UPDATE_KEYS = frozenset({"name", "disk_format", "container_format", "is_public", "owner",
                         "properties", "status", "description", "volume_id"})
_TEXT_KEYS = ("description", "volume_id")

UTC = datetime.UTC


@attrs.frozen
class Membership:
    """One member of an image and what it answered (Glance's member
    status: pending, accepted, rejected); members shared through Plankton
    or the object store are accepted."""

    member: str
    status: str
    created_at: datetime.datetime
    updated_at: datetime.datetime


@attrs.frozen
class Image:
    """One image as every API shows it (see the module docstring)."""

    id: str                 # Pithos object uuid
    name: str
    owner: str              # account uuid
    location: str           # pithos://<account>/<container>/<path>
    checksum: str           # Pithos object hash (hashmap Merkle hash)
    size: int
    disk_format: str        # diskdump (default) | extdump | ntfsdump
    container_format: str   # bare (default) | aki | ari | ami | ovf
    status: str             # AVAILABLE | UNAVAILABLE | ERROR | DELETED
    is_public: bool
    members: tuple[str, ...]
    properties: dict[str, str]
    created_at: datetime.datetime
    updated_at: datetime.datetime
    is_snapshot: bool = False
    mapfile: str = ""       # the Pithos object's hash (what snf-image fetches)
    description: str = ""
    volume_id: str = ""
    # Glance's view (see ``glance_state``): public | community | shared |
    # private; a ``community`` image is readable by all, listed only on
    # request.
    visibility: str = "private"
    protected: bool = False
    os_hidden: bool = False
    min_disk: int = 0
    min_ram: int = 0
    tags: tuple[str, ...] = ()
    memberships: tuple[Membership, ...] = ()
    # MD5 and SHA-512 of the data as uploaded through Glance ("" when the
    # data never came through Glance, or the file changed since).
    md5: str = ""
    sha512: str = ""
    # Created through Glance without a name: ``name`` holds the file's.
    nameless: bool = False


# -- locations ----------------------------------------------------------------

def location_of(account: str, container: str, name: str) -> str:
    """``pithos://<account>/<container>/<name>``, each part URL-quoted
    (``/`` kept in the name)."""
    return f"pithos://{quote(account, safe='')}/{quote(container, safe='')}/{quote(name)}"


def parse_location(location: Any) -> tuple[str, str, str]:
    """``(account, container, name)`` of a ``pithos://`` location, each
    part URL-unquoted; ``BadRequest`` for anything else."""
    if not isinstance(location, str) or not location.startswith("pithos://"):
        raise errors.BadRequest(f"Invalid location {str(location)[:200]!r}: expected"
                                " pithos://<account>/<container>/<path>.")
    parts = location[len("pithos://"):].split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise errors.BadRequest(f"Invalid location {location[:200]!r}: expected"
                                " pithos://<account>/<container>/<path>.")
    try:
        account, container, name = (unquote(p, errors="strict") for p in parts)
    except UnicodeDecodeError:
        raise errors.BadRequest("The location is not valid UTF-8 once unquoted.") from None
    if not account or not container or not name or "/" in account or "/" in container:
        raise errors.BadRequest(f"Invalid location {location[:200]!r}.")
    return account, container, name


# -- files to images --------------------------------------------------------------

def _time(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, UTC)


def _registered(obj: StoredObject) -> bool:
    return NAME_KEY in obj.attributes


def image_of(obj: StoredObject) -> Image:
    """The image a registered file ``obj`` (with its ``plankton``
    attributes) is."""
    attributes = obj.attributes

    def fixed(key: str) -> str:
        return attributes.get(PREFIX + key, "")

    status = fixed("status").upper()
    if status not in ALL_STATUSES:
        status = "AVAILABLE"
    try:
        created = float(fixed("created_at"))
        if not math.isfinite(created):
            raise ValueError(created)
    except ValueError:
        created = obj.mtime
    start = PREFIX + PROPERTY_PREFIX
    properties = {k[len(start):]: v for k, v in sorted(attributes.items())
                  if k.startswith(start)}
    state = glance_state(obj)
    shared = tuple(m for m in obj.sharing.read if m not in ("*", obj.account))
    raw_members = state.get("members")
    if isinstance(raw_members, dict):
        memberships = tuple(_membership(m, v, obj.mtime) for m, v in sorted(raw_members.items()))
        # Members shared through Plankton or the object store since.
        known = {m.member for m in memberships}
        memberships += tuple(Membership(m, "accepted", _time(obj.mtime), _time(obj.mtime))
                             for m in shared if m not in known)
    else:
        memberships = tuple(Membership(m, "accepted", _time(created), _time(obj.mtime))
                            for m in shared)
    visibility = state.get("visibility")
    if visibility not in VISIBILITIES or (obj.sharing.public) != (
            visibility in ("public", "community")):
        visibility = "public" if obj.sharing.public else "shared" if shared else "private"
    hashed = state.get("hashed") == obj.hash
    tags = state.get("tags")
    return Image(
        id=attributes.get(ID_KEY) or obj.uuid, name=fixed("name"), owner=obj.account,
        location=location_of(obj.account, obj.container, obj.name),
        checksum=obj.hash, size=obj.size,
        disk_format=fixed("disk_format") or DEFAULT_DISK_FORMAT,
        container_format=fixed("container_format") or DEFAULT_CONTAINER_FORMAT,
        status=status, is_public=obj.sharing.public,
        members=tuple(m for m in obj.sharing.read if m not in ("*", obj.account)),
        properties=properties, created_at=_time(created), updated_at=_time(obj.mtime),
        is_snapshot=obj.container == SNAPSHOTS_CONTAINER, mapfile=obj.hash,
        description=fixed("description"), volume_id=fixed("volume_id"),
        visibility=visibility, protected=state.get("protected") is True,
        os_hidden=state.get("os_hidden") is True, min_disk=_count(state.get("min_disk")),
        min_ram=_count(state.get("min_ram")),
        tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        memberships=memberships,
        md5=str(state.get("md5") or "") if hashed else (obj.checksum or ""),
        sha512=str(state.get("sha512") or "") if hashed else "",
        nameless=state.get("nameless") is True)


def glance_state(obj: StoredObject) -> dict[str, Any]:
    """Glance's state of the image ``obj`` is (``{}`` when none was
    kept): ``visibility``, ``protected``, ``os_hidden``, ``min_disk``,
    ``min_ram``, ``tags``, ``members`` (``{member: [status, created,
    updated]}``), ``md5``/``sha512`` of the data and ``hashed``, the
    file's Merkle hash they were computed for."""
    raw = obj.attributes.get(GLANCE_KEY)
    if not raw:
        return {}
    try:
        state = json.loads(raw)
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else 0


def _membership(member: str, value: Any, default: float) -> Membership:
    status, created, updated = "pending", default, default
    if isinstance(value, list) and len(value) == 3:
        status = value[0] if value[0] in MEMBER_STATUSES else "pending"
        created, updated = (v if isinstance(v, int | float) else default for v in value[1:])
    return Membership(member, status, _time(created), _time(updated))


# -- validation -----------------------------------------------------------------

def _check_keys(meta: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(str(k) for k in meta if k not in allowed)
    if unknown:
        raise errors.BadRequest(f"Invalid image metadata: {', '.join(unknown)}.")


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise errors.BadRequest(f"Invalid value for '{key}': it must be text.")
    if "\x00" in value:
        raise errors.BadRequest(f"Invalid value for '{key}': it contains a NUL character.")
    if len(value) > MAX_VALUE_LENGTH:
        raise errors.BadRequest(
            f"Metadata values should be at most {MAX_VALUE_LENGTH} characters ('{key}').")
    return value


def _choice(key: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise errors.BadRequest(f"Invalid {key.replace('_', ' ')} {str(value)[:100]!r}:"
                                f" one of {', '.join(allowed)}.")
    return str(value)


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() == "true"
    raise errors.BadRequest(f"Invalid value for '{key}'.")


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise errors.BadRequest(f"Invalid '{key}' field.")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise errors.BadRequest(f"Invalid '{key}' field.")


def _stored(meta: Mapping[str, Any]) -> dict[str, str]:
    """The ``plankton:*`` attributes for the fixed metadata and properties
    in ``meta`` (already checked by key); ``""`` deletes a key."""
    out: dict[str, str] = {}
    if "name" in meta:
        name = _text("name", meta["name"])
        if not name:
            raise errors.BadRequest("Invalid image name: it may not be empty.")
        out[PREFIX + "name"] = name
    if "disk_format" in meta:
        out[PREFIX + "disk_format"] = _choice("disk_format", meta["disk_format"], DISK_FORMATS)
    if "container_format" in meta:
        out[PREFIX + "container_format"] = _choice(
            "container_format", meta["container_format"], CONTAINER_FORMATS)
    if "status" in meta:
        status = meta["status"]
        out[PREFIX + "status"] = _choice(
            "status", status.upper() if isinstance(status, str) else status, STATUSES)
    for key in _TEXT_KEYS:
        if key in meta:
            out[PREFIX + key] = _text(key, meta[key])
    properties = meta.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise errors.BadRequest("Invalid 'properties': expected key/value pairs.")
    for key, value in properties.items():
        if not isinstance(key, str) or not key or "\x00" in key:
            raise errors.BadRequest(f"Invalid property name {str(key)[:100]!r}.")
        out[PREFIX + PROPERTY_PREFIX + key] = _text(key, value)
    for key in out:
        if len(key) > MAX_KEY_LENGTH:
            raise errors.BadRequest(
                f"Metadata keys should be at most {MAX_KEY_LENGTH} characters"
                f" (prefixes included): {key[:60]!r}.")
    return out


def _check_count(old: Mapping[str, str], changes: Mapping[str, str]) -> None:
    keys = set(old)
    for key, value in changes.items():
        if value == "":
            keys.discard(key)
        else:
            keys.add(key)
    if len(keys) > MAX_KEYS:
        raise errors.BadRequest(
            f"An image has at most {MAX_KEYS} metadata keys and properties in all"
            f" ({len(keys)} requested).")


def _public_sharing(obj: StoredObject, public: bool) -> Sharing | None:
    """The file's sharing with ``*`` in or out of its read list, or
    ``None`` when that changes nothing."""
    if public == obj.sharing.public:
        return None
    read = {m for m in obj.sharing.read if m != "*"} | ({"*"} if public else set())
    return Sharing(tuple(sorted(read)), obj.sharing.write)


# -- listing ----------------------------------------------------------------------

def _by(key: str) -> Any:
    return lambda image: getattr(image, key)


def sort_images(images: Iterable[Image], keys: Sequence[tuple[str, str]]) -> list[Image]:
    """``images`` ordered by ``keys`` (``(sort key, "asc"|"desc")``, most
    significant first), ties broken by id; ``BadRequest`` on a key not in
    ``SORT_KEYS`` or a direction not in ``SORT_DIRS``."""
    for key, direction in keys:
        if key not in SORT_KEYS:
            raise errors.BadRequest(f"Invalid 'sort_key' {key[:60]!r}:"
                                    f" one of {', '.join(SORT_KEYS)}.")
        if direction not in SORT_DIRS:
            raise errors.BadRequest(f"Invalid 'sort_dir' {direction[:60]!r}: asc or desc.")
    out = sorted(images, key=lambda i: i.id)
    for key, direction in reversed(keys):
        out.sort(key=_by(key), reverse=direction == "desc")
    return out


def _matcher(filters: Mapping[str, str]) -> Any:
    """A predicate on images for the reference's listing filters."""
    unknown = sorted(k for k in filters if k not in FILTERS)
    if unknown:
        raise errors.BadRequest(f"Unknown filters: {', '.join(unknown)}.")
    bounds: dict[str, int] = {}
    for key in ("size_min", "size_max"):
        if key in filters:
            try:
                bounds[key] = int(filters[key])
            except (TypeError, ValueError):
                raise errors.BadRequest(f"Malformed request: '{key}' must be an integer.")\
                    from None
    exact = {k: filters[k] for k in ("name", "container_format", "disk_format", "owner")
             if k in filters}
    status = filters["status"].upper() if "status" in filters else None

    def matches(image: Image) -> bool:
        if any(getattr(image, k) != v for k, v in exact.items()):
            return False
        if status is not None and image.status != status:
            return False
        if "size_min" in bounds and image.size < bounds["size_min"]:
            return False
        return not ("size_max" in bounds and image.size > bounds["size_max"])

    return matches


# -- the registry -------------------------------------------------------------------

class ImageRegistry:
    """Images over the object store (see the module docstring).

    @param objects: the ``IObjectStore`` the image files are in.
    @param clock: ``seconds()`` for registration times.
    @param system_owner: the account whose images are the system images.
    @param blocks: the node's ``IBlockStore``, through which Glance
        uploads and downloads image data (``snfd.cyclades.glance``);
        ``None``: this node does not move image data (501).
    @param formats: the ``snfd.cyclades.disk_formats.DiskFormats`` that
        inspects Glance uploads; ``None``: they are not inspected.
    """

    def __init__(self, objects: IObjectStore, clock: Any, system_owner: str = "",
                 blocks: Any = None, formats: Any = None):
        self.objects = objects
        self.clock = clock
        self.system_owner = system_owner
        self.blocks = blocks
        self.formats = formats

    def is_system(self, image: Image) -> bool:
        """Whether ``image`` is a system image (owned by ``system_owner``)."""
        return bool(self.system_owner) and image.owner == self.system_owner

    # -- reads ----------------------------------------------------------------

    async def _file(self, user: str, image_id: str,
                    project: str | None = None) -> StoredObject:
        """The registered file of image ``image_id``, if ``user`` acting in
        ``project`` (its token's scope, to which images are shared as to
        Glance's member projects) may read it."""
        if not isinstance(image_id, str) or not image_id or len(image_id) > 128:
            raise errors.NotFound(f"Image {str(image_id)[:128]} not found.")
        try:
            obj = await self.objects.object_by_uuid(user, image_id, DOMAIN, project)
        except errors.NotFound:
            obj = None
        if obj is not None and obj.attributes.get(ID_KEY, image_id) != image_id:
            obj = None  # known by the id its Glance client chose
        if obj is None:
            # An id a Glance client chose: the few images that have one.
            chosen = [o for o in await self.objects.find(user, DOMAIN, ID_KEY, project)
                      if o.attributes.get(ID_KEY) == image_id]
            obj = chosen[0] if chosen else None
        if obj is None or not _registered(obj):
            raise errors.NotFound(f"Image {image_id} not found.")
        return obj

    async def stored(self, user: str, image_id: str,
                     project: str | None = None) -> StoredObject:
        """The file of image ``image_id`` with its ``plankton`` attributes,
        if ``user`` acting in ``project`` may read it (``NotFound``
        otherwise)."""
        return await self._file(user, image_id, project)

    async def _owned_file(self, user: str, image_id: str) -> StoredObject:
        obj = await self._file(user, image_id)
        if obj.account != user:
            raise errors.Forbidden(f"Only the owner may change image {image_id}.")
        return obj

    @staticmethod
    def _image(obj: StoredObject) -> Image:
        """The image ``obj`` is after a change."""
        if not _registered(obj):
            raise errors.NotFound(f"Image {obj.uuid} not found.")
        return image_of(obj)

    async def get(self, user: str, image_id: str, project: str | None = None) -> Image:
        """The image ``image_id``; ``NotFound`` if there is none or
        ``user`` acting in ``project`` may not read it."""
        return image_of(await self._file(user, image_id, project))

    async def list(self, user: str, *, filters: dict[str, str] | None = None,
                   sort_key: str = "created_at", sort_dir: str = "desc",
                   project: str | None = None) -> builtins.list[Image]:
        """The images ``user`` acting in ``project`` may read (own, shared
        with the user or the project, public).

        ``filters``: ``name``, ``container_format``, ``disk_format``,
        ``owner`` (exact), ``status`` (case-insensitive), ``size_min``,
        ``size_max`` (bytes, inclusive); others are a ``BadRequest``, as
        are a ``sort_key`` not in ``SORT_KEYS`` and a ``sort_dir`` other
        than asc/desc.
        """
        matches = _matcher(filters or {})
        order = [(sort_key, sort_dir)]
        sort_images([], order)
        found = [image_of(obj)
                 for obj in await self.objects.find(user, DOMAIN, NAME_KEY, project)]
        return sort_images([image for image in found if matches(image)], order)

    async def shared_with(self, user: str, member: str) -> builtins.list[Image]:
        """The images ``member`` shares with ``user``: those ``user`` may
        read that ``member`` owns and has not made public (what kamaki's
        ``image shared <member>`` lists)."""
        return [i for i in await self.list(user) if i.owner == member and not i.is_public]

    async def members(self, user: str, image_id: str) -> builtins.list[str]:
        """The members of an image ``user`` may read: all of them for its
        owner; for anyone else only ``user`` itself, when it is one (a
        member does not learn who else the image is shared with)."""
        image = image_of(await self._file(user, image_id))
        return [m for m in image.members if user in (image.owner, m)]

    # -- changes --------------------------------------------------------------

    async def register(self, user: str, location: str, meta: dict[str, Any]) -> Image:
        """Make the file at ``location`` (``pithos://...``, owned by
        ``user``) an image, or update the image it already is.

        ``meta``: ``name`` (required), ``disk_format``,
        ``container_format``, ``is_public``, ``properties``,
        ``description``, ``status``, ``volume_id``; ``size`` and
        ``checksum`` must equal the file's size and hash; ``store`` must be
        ``pithos``; ``owner`` is ignored; an ``id`` is refused.  All
        ``BadRequest``.  A file the user may not read is ``NotFound``; one
        of another account the user may read is ``Forbidden``.
        Properties are merged into those registered before; the
        registration time is kept on a new registration.
        """
        meta = dict(meta or {})
        _check_keys(meta, REGISTER_KEYS)
        if "id" in meta:
            raise errors.BadRequest("Setting the image ID is not supported.")
        store = meta.pop("store", STORE)
        if store != STORE:
            raise errors.BadRequest(f"Invalid store {str(store)[:60]!r}: only"
                                    f" '{STORE}' is supported.")
        if not meta.get("name"):
            raise errors.BadRequest("The image 'name' is required.")
        meta.setdefault("disk_format", DEFAULT_DISK_FORMAT)
        meta.setdefault("container_format", DEFAULT_CONTAINER_FORMAT)
        public = _flag("is_public", meta.pop("is_public", False))
        meta.pop("owner", None)
        size = meta.pop("size", None)
        checksum = meta.pop("checksum", None)
        changes = _stored(meta)
        account, container, name = parse_location(location)
        if account != user:
            # 404 unless the caller may read the file at all.
            await self.objects.object_at(user, account, container, name)
            raise errors.Forbidden("Only the owner of a file may register it as an image.")
        obj = await self.objects.object_at(user, account, container, name, DOMAIN)
        if size is not None and _integer("size", size) != obj.size:
            raise errors.BadRequest(f"Invalid 'size' field: the file has {obj.size} bytes.")
        if checksum is not None and checksum != obj.hash:
            raise errors.BadRequest("Invalid 'checksum' field: it is not the file's hash.")
        if PREFIX + "created_at" not in obj.attributes or not _registered(obj):
            changes[PREFIX + "created_at"] = repr(float(self.clock.seconds()))
        _check_count(obj.attributes, changes)
        return self._image(await self.objects.set_attributes(
            user, account, container, name, DOMAIN, changes,
            sharing=_public_sharing(obj, public)))

    async def register_file(self, user: str, source: Path, container: str,
                            meta: dict[str, Any]) -> Image:
        """Store the local file ``source`` as ``<user>/<container>/<its
        name>`` (a new version if it exists; the container is created if
        needed) and register it with ``meta`` as ``register`` does: what
        operator tools do (``snf-manage image-register``, the demo image of
        the embedded default)."""
        await self.objects.store_file(user, user, container, source.name, source)
        return await self.register(user, location_of(user, container, source.name), meta)

    async def update(self, user: str, image_id: str, meta: dict[str, Any]) -> Image:
        """Change an image's metadata (owner only): ``name``,
        ``disk_format``, ``container_format``, ``status``, ``description``,
        ``volume_id``, ``is_public`` as given; ``properties`` are merged
        into the image's (an empty value removes that property); ``owner``
        is ignored.  Other keys are a ``BadRequest``."""
        meta = dict(meta or {})
        _check_keys(meta, UPDATE_KEYS)
        obj = await self._owned_file(user, image_id)
        public = meta.pop("is_public", None)
        meta.pop("owner", None)
        changes = _stored(meta)
        _check_count(obj.attributes, changes)
        sharing = _public_sharing(obj, _flag("is_public", public)) if public is not None \
            else None
        if changes:
            obj = await self.objects.set_attributes(
                user, obj.account, obj.container, obj.name, DOMAIN, changes, sharing=sharing)
        elif sharing is not None:
            await self.objects.set_sharing(user, obj.account, obj.container, obj.name, sharing)
            obj = await self.objects.object_at(user, obj.account, obj.container, obj.name,
                                               DOMAIN)
        return self._image(obj)

    async def unregister(self, user: str, image_id: str) -> None:
        """Make the image a plain file again (owner only): its image
        metadata goes, the file and its sharing stay."""
        obj = await self._owned_file(user, image_id)
        await self.objects.set_attributes(user, obj.account, obj.container, obj.name, DOMAIN,
                                          {}, replace=True)

    async def _set_read(self, user: str, image_id: str,
                        change: Any) -> None:
        obj = await self._owned_file(user, image_id)
        read = obj.sharing.read
        members = {m for m in read if m not in ("*", obj.account)}
        wanted = set(change(members))
        if wanted == members:
            return
        keep = {m for m in read if m in ("*", obj.account)}
        sharing = Sharing(tuple(sorted(wanted | keep)), obj.sharing.write)
        state = glance_state(obj)
        if isinstance(state.get("members"), dict):
            # Glance's member list follows: gone members go, new ones
            # are accepted (Plankton shares without asking).
            now = float(self.clock.seconds())
            state["members"] = {m: v for m, v in state["members"].items() if m in wanted}
            for m in wanted - members:
                state["members"][m] = ["accepted", now, now]
            await self.objects.set_attributes(
                user, obj.account, obj.container, obj.name, DOMAIN,
                {GLANCE_KEY: json.dumps(state, sort_keys=True)}, sharing=sharing)
            return
        await self.objects.set_sharing(user, obj.account, obj.container, obj.name, sharing)

    @staticmethod
    def _checked_members(members: Iterable[Any]) -> builtins.list[str]:
        out = []
        for member in members:
            if not isinstance(member, str) or not member.strip() or member.strip() == "*":
                raise errors.BadRequest(f"Invalid member {str(member)[:100]!r}.")
            # As the object store keeps sharing entries.
            out.append("".join(member.split()).lower())
        return out

    async def set_members(self, user: str, image_id: str, members: builtins.list[str]) -> None:
        """Make ``members`` the image's members (owner only); whether it is
        public does not change (a public image keeps no members).  Entries
        are user uuids or ``<owner>:<group>``, kept as the object store
        keeps them (lowercased, without spaces); others are a
        ``BadRequest``."""
        checked = self._checked_members(members)
        await self._set_read(user, image_id, lambda _old: checked)

    async def add_member(self, user: str, image_id: str, member: str) -> None:
        """Share the image with ``member`` (owner only)."""
        (checked,) = self._checked_members([member])
        await self._set_read(user, image_id, lambda old: old | {checked})

    async def remove_member(self, user: str, image_id: str, member: str) -> None:
        """Stop sharing the image with ``member`` (owner only; a
        non-member is no error)."""
        (checked,) = self._checked_members([member])
        await self._set_read(user, image_id, lambda old: old - {checked})


__all__ = ["ALL_STATUSES", "CONTAINER_FORMATS", "DISK_FORMATS", "DOMAIN", "GLANCE_KEY", "ID_KEY",
           "SORT_KEYS", "STATUSES", "Image", "ImageRegistry", "Membership", "glance_state",
           "image_of", "location_of", "parse_location", "sort_images"]
