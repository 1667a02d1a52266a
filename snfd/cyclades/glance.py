"""Glance v2's image life cycle over the image registry
(``snfd.cyclades.images``): images created before their data, JSON-patch
updates, data uploaded (or staged and imported) into the owner's
``images`` container, members with their answers, tags, deactivation,
deletion with the data.

States (``Image.status``, Glance's name in brackets)::

    QUEUED [queued] --upload--> UNAVAILABLE [saving] --> AVAILABLE [active]
    QUEUED --stage--> UPLOADING [uploading] --import--> IMPORTING
        [importing] --> AVAILABLE
    AVAILABLE <--deactivate/reactivate--> DEACTIVATED [deactivated]

A failed upload goes back to QUEUED (its blocks are left to the object
store's garbage collection), and so does data whose declared disk
format it is not (``snfd.cyclades.disk_formats``, checked before the
data becomes the file's).  An image is still one file of the object
store: created, it is an empty file ``<owner>/images/<id>`` (the id its
client chose, else a fresh uuid; ``images.ID_KEY``) registered with
``status`` QUEUED; its
data is a new version of that file, made from blocks put in the node's
block store and charged to the owner's ``pithos.diskspace``.  Glance's
own state (visibility, protected, os_hidden, min_disk, min_ram, tags,
members and their answers, MD5/SHA-512 of the data) is one attribute of
the file (``images.GLANCE_KEY``).

Visibility is the file's read sharing: ``*`` for public and community
images, the members (whatever they answered) for shared ones, nobody
else for private ones; the member list is kept whatever the visibility.
Members answer for themselves; the registry then writes the owner's file
on their behalf (the object store lets only writers change a file).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import attrs
from twisted.internet import threads

from snfd import errors
from snfd.cyclades.disk_formats import DiskFormats, Sampler, checked
from snfd.cyclades.images import (
    CONTAINER_FORMATS,
    DISK_FORMATS,
    DOMAIN,
    GLANCE_KEY,
    ID_KEY,
    MEMBER_STATUSES,
    PREFIX,
    PROPERTY_PREFIX,
    VISIBILITIES,
    Image,
    ImageRegistry,
    glance_state,
    image_of,
)
from snfd.interfaces import ObjectHashmap, Sharing, StoredObject
from snfd.pithos.hashmap import EMPTY_HASH

# The container Glance images' files are created in.
CONTAINER = "images"

GLANCE_DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi",
                       "iso", "ploop", *DISK_FORMATS)
GLANCE_CONTAINER_FORMATS = tuple(dict.fromkeys(
    (*CONTAINER_FORMATS, "ova", "docker", "compressed")))
IMPORT_METHODS = ("glance-direct",)

# Fields a client may not set (403), and those it sets with their own rules.
READ_ONLY = frozenset({"status", "size", "virtual_size", "checksum", "os_hash_algo",
                       "os_hash_value", "created_at", "updated_at", "file", "self",
                       "schema", "direct_url", "locations", "owner", "stores",
                       "deleted", "deleted_at"})
CORE = frozenset({"id", "name", "visibility", "protected", "os_hidden", "min_disk",
                  "min_ram", "tags", "disk_format", "container_format"})
RESERVED_PREFIX = "os_glance"
MAX_NAME = 255
MAX_TAG = 255
MAX_TAGS = 128
MAX_INT = 2 ** 31 - 1
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")


@attrs.frozen
class Op:
    """One JSON-patch operation: ``op`` add|replace|remove on the image
    attribute ``path`` names (``/name``, ``/tags``, ``/<property>``)."""

    op: str
    path: str
    value: Any = None


@attrs.frozen
class Data:
    """What ``GlanceImages.data`` gives to send an image's bytes: the
    image, its blocks (``None`` when it has no data yet) and the block
    store they are in."""

    image: Image
    hashmap: ObjectHashmap | None
    blocks: Any
    block_size: int


def _now_state(state: Mapping[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise errors.BadRequest(f"Invalid value for '{key}': a boolean is expected.")
    return value


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise errors.BadRequest(f"Invalid value for '{key}': an integer from 0 to"
                                f" {MAX_INT} is expected.")
    return value


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise errors.BadRequest("Invalid value for 'tags': a list of strings is expected.")
    out = list(dict.fromkeys(value))
    for tag in out:
        _check_tag(tag)
    if len(out) > MAX_TAGS:
        raise errors.OverLimit(f"An image has at most {MAX_TAGS} tags.")
    return out


def _check_tag(tag: str) -> str:
    if not tag or len(tag) > MAX_TAG or "\x00" in tag:
        raise errors.BadRequest(f"Invalid tag {tag[:60]!r}: 1 to {MAX_TAG} characters.")
    return tag


def _name(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_NAME or "\x00" in value:
        raise errors.BadRequest(f"Invalid value for 'name': text of at most {MAX_NAME}"
                                " characters is expected.")
    return value


def _format(key: str, value: Any, allowed: Sequence[str]) -> str:
    if value is None:
        return ""
    if value not in allowed:
        raise errors.BadRequest(f"Invalid value {str(value)[:60]!r} for '{key}': one of"
                                f" {', '.join(allowed)}.")
    return str(value)


def _property(key: str, value: Any) -> str:
    if key.startswith(RESERVED_PREFIX):
        raise errors.Forbidden(f"Attribute '{key[:60]}' is reserved.")
    if not key or "\x00" in key or key.startswith("/") or len(key) > 255:
        raise errors.BadRequest(f"Invalid property name {key[:60]!r}.")
    if not isinstance(value, str) or "\x00" in value:
        raise errors.BadRequest(f"Invalid value for property '{key[:60]}': text is expected.")
    return value


class _Draft:
    """An image's attributes being changed by a create or a patch: the
    ``plankton`` keys to write and Glance's state."""

    def __init__(self, obj: StoredObject | None, placeholder: str = ""):
        # The stored name of a nameless image (the file's name): the
        # ``name`` key marks a file as an image and cannot be empty.
        self.placeholder = obj.name if obj is not None else placeholder
        self.attributes = dict(obj.attributes) if obj is not None else {}
        self.changes: dict[str, str] = {}
        self.state = glance_state(obj) if obj is not None else {}
        if obj is not None:
            image = image_of(obj)
            self.state.setdefault("visibility", image.visibility)
            if "members" not in self.state:
                self.state["members"] = {
                    m.member: [m.status, m.created_at.timestamp(), m.updated_at.timestamp()]
                    for m in image.memberships}

    def fixed(self, key: str) -> str:
        return self.changes.get(PREFIX + key, self.attributes.get(PREFIX + key, ""))

    def set_fixed(self, key: str, value: str) -> None:
        self.changes[PREFIX + key] = value

    def properties(self) -> dict[str, str]:
        start = PREFIX + PROPERTY_PREFIX
        out = {k[len(start):]: v for k, v in self.attributes.items() if k.startswith(start)}
        for k, v in self.changes.items():
            if k.startswith(start):
                if v:
                    out[k[len(start):]] = v
                else:
                    out.pop(k[len(start):], None)
        return out

    def set(self, key: str, value: Any) -> None:
        """Set Glance's ``key`` (a core field or a property) to ``value``,
        checked as Glance checks it."""
        if key in READ_ONLY:
            raise errors.Forbidden(f"Attribute '{key}' is read-only.")
        if key == "id":
            raise errors.Forbidden("Attribute 'id' is read-only.")
        if key == "name":
            name = _name(value)
            self.state["nameless"] = not name
            self.set_fixed("name", name or self.placeholder)
        elif key == "visibility":
            if value not in VISIBILITIES:
                raise errors.BadRequest(f"Invalid visibility {str(value)[:60]!r}: one of"
                                        f" {', '.join(VISIBILITIES)}.")
            self.state["visibility"] = value
        elif key in ("protected", "os_hidden"):
            self.state[key] = _bool(key, value)
        elif key in ("min_disk", "min_ram"):
            self.state[key] = _int(key, value)
        elif key == "tags":
            self.state["tags"] = _tags(value)
        elif key == "disk_format":
            self.set_fixed("disk_format", _format(key, value, GLANCE_DISK_FORMATS))
        elif key == "container_format":
            self.set_fixed("container_format", _format(key, value, GLANCE_CONTAINER_FORMATS))
        else:
            self.changes[PREFIX + PROPERTY_PREFIX + key] = _property(key, value)

    def remove(self, key: str) -> None:
        if key in READ_ONLY or key == "id":
            raise errors.Forbidden(f"Attribute '{key}' is read-only.")
        if key in CORE:
            if key == "tags":
                self.state["tags"] = []
                return
            raise errors.Forbidden(f"Attribute '{key}' is a base attribute: it cannot be"
                                   " removed.")
        if key.startswith(RESERVED_PREFIX):
            raise errors.Forbidden(f"Attribute '{key[:60]}' is reserved.")
        if key not in self.properties():
            raise errors.Conflict(f"Property '{key[:60]}' does not exist.")
        self.changes[PREFIX + PROPERTY_PREFIX + key] = ""

    def has(self, key: str) -> bool:
        return key in CORE or key in self.properties()

    def write(self) -> dict[str, str]:
        """The attribute changes, Glance's state included."""
        out = dict(self.changes)
        out[GLANCE_KEY] = _now_state(self.state)
        return out


def _sharing(obj: StoredObject, visibility: str, members: Mapping[str, Any]) -> Sharing:
    """The read sharing ``visibility`` and ``members`` make (see the module
    docstring); the write sharing stays."""
    if visibility in ("public", "community"):
        read: tuple[str, ...] = ("*",)
    elif visibility == "shared":
        read = tuple(sorted(members))
    else:
        read = ()
    return Sharing(read, obj.sharing.write)


def _pointer(path: Any) -> str:
    """The attribute a JSON pointer names: ``/name`` -> ``name``."""
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise errors.BadRequest(f"Invalid JSON pointer {str(path)[:60]!r}.")
    key = path[1:]
    if "/" in key:
        raise errors.BadRequest(f"Invalid path {path[:60]!r}: nested attributes are not"
                                " supported.")
    return key.replace("~1", "/").replace("~0", "~")


def parse_patch(body: Any, media_type: str) -> list[Op]:
    """The operations of a PATCH body in Glance's media types:
    ``application/openstack-images-v2.1-json-patch`` (``{"op", "path",
    "value"}``) or the older ``...-v2.0-json-patch`` (``{"<op>": path,
    "value"}``); ``BadRequest`` for anything else, ``BadMediaType`` (415)
    for another media type."""
    if media_type not in ("application/openstack-images-v2.1-json-patch",
                          "application/openstack-images-v2.0-json-patch"):
        raise errors.BadMediaType(
            "Use application/openstack-images-v2.1-json-patch for image updates.")
    if not isinstance(body, list):
        raise errors.BadRequest("A JSON-patch body is a list of operations.")
    ops = []
    for entry in body:
        if not isinstance(entry, dict):
            raise errors.BadRequest("Each JSON-patch operation is an object.")
        if media_type.endswith("v2.1-json-patch"):
            op, path = entry.get("op"), entry.get("path")
            extra = set(entry) - {"op", "path", "value"}
        else:
            named = [k for k in ("add", "replace", "remove") if k in entry]
            if len(named) != 1:
                raise errors.BadRequest("Each operation names one of add, replace, remove.")
            op, path = named[0], entry[named[0]]
            extra = set(entry) - {op, "value"}
        if op not in ("add", "replace", "remove"):
            raise errors.BadRequest(f"Invalid operation {str(op)[:30]!r}: add, replace or"
                                    " remove.")
        if extra:
            raise errors.BadRequest(f"Unknown keys in an operation: {', '.join(sorted(extra))}.")
        if op != "remove" and "value" not in entry:
            raise errors.BadRequest(f"Operation '{op}' needs a 'value'.")
        ops.append(Op(op, _pointer(path), entry.get("value")))
    return ops


class GlanceImages:
    """Glance's image operations over an ``ImageRegistry`` (see the module
    docstring).  Every method acts as ``user`` (a user uuid); ``admin``
    says the caller is a cloud administrator.  Uploaded data is inspected
    by the registry's ``formats`` (none: not inspected)."""

    def __init__(self, registry: ImageRegistry, container: str = CONTAINER):
        self.registry = registry
        self.objects = registry.objects
        self.container = container

    # -- helpers --------------------------------------------------------------

    async def _owned(self, user: str, image_id: str, admin: bool = False) -> StoredObject:
        obj = await self.registry.stored(user, image_id)
        if obj.account != user and not admin:
            raise errors.Forbidden(f"Only the owner may change image {image_id}.")
        return obj

    async def _write(self, obj: StoredObject, changes: Mapping[str, str],
                     sharing: Sharing | None = None) -> Image:
        """Write ``changes`` to the image's file as its owner (the caller
        was checked)."""
        if sharing == obj.sharing:
            sharing = None
        new = await self.objects.set_attributes(obj.account, obj.account, obj.container,
                                                obj.name, DOMAIN, dict(changes),
                                                sharing=sharing)
        return image_of(new)

    async def _set_status(self, obj: StoredObject, status: str) -> StoredObject:
        return await self.objects.set_attributes(obj.account, obj.account, obj.container,
                                                 obj.name, DOMAIN, {PREFIX + "status": status})

    def _now(self) -> float:
        return float(self.registry.clock.seconds())

    # -- create, update, delete ----------------------------------------------

    async def create(self, user: str, body: Mapping[str, Any]) -> Image:
        """A new image without data (status QUEUED) from Glance's create
        body: the core fields and custom properties (text).  A given
        ``id`` must be a UUID not in use (``Conflict``); read-only fields
        and ``os_glance*`` are ``Forbidden``; bad values ``BadRequest``.
        The visibility is ``shared`` unless given."""
        chosen = body.get("id")
        if chosen is not None:
            if not isinstance(chosen, str) or not _UUID.match(chosen):
                raise errors.BadRequest("Invalid 'id': a UUID is expected.")
            chosen = str(uuid.UUID(chosen))
        name = chosen or str(uuid.uuid4())
        draft = _Draft(None, placeholder=name)
        draft.state.update({"visibility": "shared", "protected": False, "os_hidden": False,
                            "min_disk": 0, "min_ram": 0, "tags": [], "members": {}})
        draft.set("name", None)
        for key, value in body.items():
            if key == "id":
                continue
            if not isinstance(key, str):
                raise errors.BadRequest("Invalid attribute name.")
            draft.set(key, value)
        if chosen is not None:
            try:
                await self.registry.stored(user, chosen)
            except errors.NotFound:
                pass
            else:
                raise errors.Conflict(f"Image with identifier {chosen} already exists.")
        try:
            await self.objects.object_at(user, user, self.container, name)
        except errors.NotFound:
            pass
        else:
            raise errors.Conflict(f"Image with identifier {name} already exists.")
        draft.set_fixed("status", "QUEUED")
        draft.set_fixed("created_at", repr(self._now()))
        changes = draft.write()
        # The image is known by its file's name, so that its owner finds
        # the file (``images/<id>``) to upload new versions of it.
        changes[ID_KEY] = name
        await self.objects.create_from_hashmap(user, user, self.container, name, 0,
                                               [EMPTY_HASH])
        obj = await self.objects.object_at(user, user, self.container, name, DOMAIN)
        return await self._write(obj, changes, _sharing(obj, draft.state["visibility"], {}))

    async def update(self, user: str, image_id: str, ops: Sequence[Op],
                     admin: bool = False) -> Image:
        """Apply JSON-patch ``ops`` (owner or administrator).  ``replace``
        or ``remove`` of a missing property is a ``Conflict``; changing a
        read-only field, removing a base one or an ``os_glance*`` key is
        ``Forbidden``; formats change only while QUEUED (``Forbidden``)."""
        obj = await self._owned(user, image_id, admin)
        draft = _Draft(obj)
        queued = draft.fixed("status") == "QUEUED"
        for op in ops:
            if op.path in ("disk_format", "container_format") and not queued \
                    and op.value != draft.fixed(op.path):
                raise errors.Forbidden(f"Attribute '{op.path}' can be changed only while the"
                                       " image is queued.")
            if op.op == "remove":
                draft.remove(op.path)
            elif op.op == "replace" and not draft.has(op.path) and op.path not in READ_ONLY \
                    and not op.path.startswith(RESERVED_PREFIX):
                raise errors.Conflict(f"Property '{op.path[:60]}' does not exist.")
            else:
                draft.set(op.path, op.value)
        changes = draft.write()
        return await self._write(obj, changes, _sharing(obj, draft.state["visibility"],
                                                        draft.state.get("members") or {}))

    async def delete(self, user: str, image_id: str, admin: bool = False) -> None:
        """Delete the image and its file (owner or administrator);
        ``Forbidden`` while it is protected."""
        obj = await self._owned(user, image_id, admin)
        if glance_state(obj).get("protected") is True:
            raise errors.Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        await self.objects.delete(obj.account, obj.account, obj.container, obj.name)

    # -- data ------------------------------------------------------------------

    def _blocks(self) -> Any:
        if self.registry.blocks is None:
            raise errors.NotImplementedFault(
                "This node moves no image data: upload to and download from the object"
                " store.")
        return self.registry.blocks

    async def upload(self, user: str, image_id: str, source: BinaryIO,
                     stage: bool = False) -> Image:
        """Store ``source`` (a file open for reading, read in threads a
        block at a time) as the image's data: QUEUED -> saving -> AVAILABLE,
        or with ``stage`` QUEUED -> UPLOADING (``import_`` finishes it).
        ``Conflict`` unless QUEUED; ``BadRequest`` while the formats are
        unset, or when the data is not the declared disk format
        (``disk_formats.check``); ``OverLimit`` (413) past the owner's
        ``pithos.diskspace``; on any failure the image goes back to QUEUED
        and nothing is charged."""
        blocks = self._blocks()
        obj = await self._owned(user, image_id)
        status = obj.attributes.get(PREFIX + "status", "")
        if status != "QUEUED":
            raise errors.Conflict(f"Image {image_id} has data already (status"
                                  f" {status.lower() or 'active'}): only a queued image"
                                  " takes data.")
        if not obj.attributes.get(PREFIX + "disk_format") or \
                not obj.attributes.get(PREFIX + "container_format"):
            raise errors.BadRequest("Properties disk_format and container_format must be set"
                                    " before the image data.")
        obj = await self._set_status(obj, "UPLOADING" if stage else "UNAVAILABLE")
        declared = (obj.attributes.get(PREFIX + "disk_format", ""),
                    obj.attributes.get(PREFIX + "container_format", ""))
        formats: DiskFormats | None = self.registry.formats if checked(*declared) else None
        sampler = Sampler() if formats is not None else None
        try:
            size, hashes, md5, sha512 = await self._put(blocks, source, sampler)
            if formats is not None and sampler is not None:
                # Before the data is the file's: a refused upload is not
                # charged and leaves its blocks to the garbage collection.
                await formats.verify(*declared, sampler.sample())
            await self.objects.create_from_hashmap(obj.account, obj.account, obj.container,
                                                   obj.name, size, hashes)
        except BaseException:
            await self._set_status(obj, "QUEUED")
            raise
        new = await self.objects.object_at(obj.account, obj.account, obj.container,
                                           obj.name, DOMAIN)
        state = glance_state(new)
        state.update({"md5": md5, "sha512": sha512, "hashed": new.hash})
        return await self._write(new, {PREFIX + "status": "UPLOADING" if stage else "AVAILABLE",
                                       GLANCE_KEY: _now_state(state)})

    @staticmethod
    async def _put(blocks: Any, source: BinaryIO,
                   sampler: Sampler | None = None) -> tuple[int, list[str], str, str]:
        """Put the blocks of ``source``: ``(size, hashes, md5, sha512)``;
        ``sampler`` is fed each block."""
        md5 = hashlib.md5(usedforsecurity=False)
        sha512 = hashlib.sha512()
        size = 0
        hashes: list[str] = []

        def read() -> bytes:
            block = source.read(blocks.block_size)
            md5.update(block)
            sha512.update(block)
            if sampler is not None:
                sampler.feed(block)
            return block

        while True:
            block = await threads.deferToThread(read)
            if not block:
                break
            size += len(block)
            hashes += await blocks.put([block])
        return size, hashes or [EMPTY_HASH], md5.hexdigest(), sha512.hexdigest()

    async def import_(self, user: str, image_id: str, method: Any) -> None:
        """Import staged data (``glance-direct``): UPLOADING -> AVAILABLE.
        Another method is a ``BadRequest``; an image not staged a
        ``Conflict``."""
        name = method.get("name") if isinstance(method, dict) else None
        if name not in IMPORT_METHODS:
            raise errors.BadRequest(f"Import method {str(name)[:40]!r} is not available: use"
                                    f" {', '.join(IMPORT_METHODS)}.")
        obj = await self._owned(user, image_id)
        status = obj.attributes.get(PREFIX + "status", "")
        if status != "UPLOADING":
            raise errors.Conflict(f"Image {image_id} has no staged data (status"
                                  f" {status.lower() or 'active'}).")
        obj = await self._set_status(obj, "IMPORTING")
        await self._set_status(obj, "AVAILABLE")

    async def data(self, user: str, image_id: str, admin: bool = False,
                   project: str | None = None) -> Data:
        """What to send for the image's data (``user`` acting in
        ``project``): ``Forbidden`` while it is deactivated (but to
        administrators); ``hashmap`` ``None`` while it has none (queued,
        or staged)."""
        blocks = self._blocks()
        obj = await self.registry.stored(user, image_id, project)
        image = image_of(obj)
        if image.status == "DEACTIVATED" and not admin:
            raise errors.Forbidden(f"Image {image_id} is deactivated: its data cannot be"
                                   " downloaded.")
        if image.status in ("QUEUED", "UPLOADING", "IMPORTING"):
            return Data(image, None, blocks, blocks.block_size)
        hashmap = await self.objects.hashmap(user, obj.account, obj.container, obj.name,
                                             project)
        return Data(image, hashmap, blocks, blocks.block_size)

    # -- actions, tags, members ----------------------------------------------

    async def deactivate(self, user: str, image_id: str, admin: bool = False) -> None:
        """AVAILABLE -> DEACTIVATED (owner or administrator); ``Forbidden``
        from any other status but DEACTIVATED."""
        obj = await self._owned(user, image_id, admin)
        status = image_of(obj).status
        if status == "DEACTIVATED":
            return
        if status != "AVAILABLE":
            raise errors.Forbidden(f"Image {image_id} is {status.lower()}: only an active"
                                   " image can be deactivated.")
        await self._set_status(obj, "DEACTIVATED")

    async def reactivate(self, user: str, image_id: str, admin: bool = False) -> None:
        """DEACTIVATED -> AVAILABLE (owner or administrator)."""
        obj = await self._owned(user, image_id, admin)
        status = image_of(obj).status
        if status == "AVAILABLE":
            return
        if status != "DEACTIVATED":
            raise errors.Forbidden(f"Image {image_id} is {status.lower()}: only a deactivated"
                                   " image can be reactivated.")
        await self._set_status(obj, "AVAILABLE")

    async def add_tag(self, user: str, image_id: str, tag: str) -> None:
        """Tag the image (owner only; an existing tag is no error)."""
        obj = await self._owned(user, image_id)
        draft = _Draft(obj)
        tags = list(draft.state.get("tags") or [])
        if _check_tag(tag) in tags:
            return
        draft.state["tags"] = _tags([*tags, tag])
        await self._write(obj, {GLANCE_KEY: _now_state(draft.state)})

    async def remove_tag(self, user: str, image_id: str, tag: str) -> None:
        """Remove a tag (owner only); ``NotFound`` when the image lacks it."""
        obj = await self._owned(user, image_id)
        draft = _Draft(obj)
        tags = list(draft.state.get("tags") or [])
        if tag not in tags:
            raise errors.NotFound(f"Tag {tag[:60]!r} not found on image {image_id}.")
        draft.state["tags"] = [t for t in tags if t != tag]
        await self._write(obj, {GLANCE_KEY: _now_state(draft.state)})

    async def _shared(self, user: str, image_id: str,
                      project: str | None = None) -> tuple[StoredObject, _Draft]:
        obj = await self.registry.stored(user, image_id, project)
        draft = _Draft(obj)
        if draft.state.get("visibility") != "shared":
            raise errors.Forbidden(f"Image {image_id} is not shared: only images with"
                                   " visibility 'shared' have members.")
        return obj, draft

    async def add_member(self, user: str, image_id: str, member: Any) -> Image:
        """Share the image with ``member`` (owner only), pending its
        answer; ``Conflict`` when it is one already."""
        if not isinstance(member, str) or not member.strip() or member.strip() == "*" \
                or len(member) > 255:
            raise errors.BadRequest("Invalid 'member': a project or user id is expected.")
        member = "".join(member.split()).lower()
        obj, draft = await self._shared(user, image_id)
        if obj.account != user:
            raise errors.Forbidden(f"Only the owner may share image {image_id}.")
        members = draft.state["members"]
        if member in members:
            raise errors.Conflict(f"{member} is a member of image {image_id} already.")
        if member == obj.account:
            raise errors.BadRequest("The owner of an image cannot be its member.")
        now = self._now()
        members[member] = ["pending", now, now]
        return await self._write(obj, {GLANCE_KEY: _now_state(draft.state)},
                                 _sharing(obj, "shared", members))

    async def set_member_status(self, caller: tuple[str, str | None], image_id: str,
                                member: str,
                                status: Any) -> Image:
        """The member's answer, by that member only: ``caller`` is the
        user and, when its token has one, the project it acts in; one of
        them must be ``member`` (``Forbidden`` otherwise, the owner
        too).  Pending, accepted or rejected (``BadRequest`` otherwise)."""
        if status not in MEMBER_STATUSES:
            raise errors.BadRequest(f"Invalid member status {str(status)[:30]!r}: one of"
                                    f" {', '.join(MEMBER_STATUSES)}.")
        obj, draft = await self._shared(caller[0], image_id, caller[1])
        members = draft.state["members"]
        if member not in members:
            raise errors.NotFound(f"{member} is not a member of image {image_id}.")
        if member not in caller:
            raise errors.Forbidden("Only the member may answer for itself.")
        entry = members[member]
        members[member] = [status, entry[1] if len(entry) == 3 else self._now(), self._now()]
        return await self._write(obj, {GLANCE_KEY: _now_state(draft.state)})

    async def remove_member(self, user: str, image_id: str, member: str) -> None:
        """Stop sharing with ``member`` (owner only); ``NotFound`` when it
        is none."""
        obj, draft = await self._shared(user, image_id)
        if obj.account != user:
            raise errors.Forbidden(f"Only the owner may change the members of {image_id}.")
        members = draft.state["members"]
        if member not in members:
            raise errors.NotFound(f"{member} is not a member of image {image_id}.")
        del members[member]
        await self._write(obj, {GLANCE_KEY: _now_state(draft.state)},
                          _sharing(obj, "shared", members))


__all__ = ["GLANCE_CONTAINER_FORMATS", "GLANCE_DISK_FORMATS", "IMPORT_METHODS", "Data",
           "GlanceImages", "Op", "parse_patch"]
