"""OpenStack Swift compatibility around the Pithos backend.

What Swift clients (python-swiftclient, rclone, ...) need beyond the plain
object API, built only on ``Backend`` operations and the block store:

- ``/info`` (capabilities) and ``/auth/v1.0`` (v1 authentication with a
  Synnefo token as the key);
- static large objects (SLO): a manifest object whose data is the JSON list
  of its segments, marked with the meta ``X-Static-Large-Object: True``;
- dynamic large objects (DLO): an object with the meta
  ``X-Object-Manifest: <container>/<prefix>`` whose data is the
  concatenation of the objects under that prefix;
- bulk delete (``POST /v1/<account>?bulk-delete``);
- container ACLs (``X-Container-Read``/``X-Container-Write``) and account
  ACLs (``X-Account-Access-Control``) mapped to Pithos sharing.

The HTTP layer (``api.py``) parses requests and renders answers; the
functions here raise ``snfd.errors`` faults.

Helper meta of an SLO manifest (not user meta; never echoed as
``X-Object-Meta-*``): ``X-Static-Large-Object`` (``"True"``),
``X-Slo-Size`` (total bytes of the segments, decimal) and ``X-Slo-Etag``
(the large object's ETag, unquoted hex: MD5 of the concatenated segment
ETags, Swift's rule).  Clients are shown the object with those as
``Content-Length`` and ``ETag``.
"""

from __future__ import annotations

import datetime
import hashlib
import http
import json
import re
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from twisted.internet import defer

from snfd import errors
from snfd.pithos import rules
from snfd.pithos.hashmap import BLOCK_SIZE, HASH_ALGORITHM
from snfd.pithos.model import ANYONE, ObjectInfo, Permissions, Subdir
from snfd.pithos.streams import read_block
from snfd.web.status import GetLeaf

# -- limits we enforce (and announce in /info) -------------------------------
# (those of names, metadata and listings are in ``snfd.pithos.rules``)

MAX_FILE_SIZE = 5 * 1024 ** 3 + 2
"""Largest single object upload (Swift's default); larger objects are
uploaded in segments (SLO/DLO).  The HTTP layer enforces it on PUT."""

MAX_MANIFEST_SEGMENTS = 1000
MAX_MANIFEST_SIZE = 8 * 1024 * 1024
MAX_SLO_DEPTH = 10
"""Nesting limit of SLOs used as segments of SLOs."""

MAX_DELETES_PER_REQUEST = 10000
MAX_FAILED_DELETES = 1000

SWIFT_API_VERSION = "2.38.3"
"""The Swift release whose API the object store follows, as ``/info``
announces it (clients and tempest compare it to decide which features
to expect, such as account object-count quotas from 2.34), not snfd's
own version."""

# Helper meta keys of SLO manifests.
SLO = "X-Static-Large-Object"
SLO_SIZE = "X-Slo-Size"
SLO_ETAG = "X-Slo-Etag"
DLO = "X-Object-Manifest"

# Segments looked up at once when checking or expanding a manifest.
_LOOKUPS_IN_FLIGHT = 16


#: ``GET /crossdomain.xml``: Flash/Silverlight clients may call the API
#: from any site (the policy Swift's crossdomain middleware serves by default).
CROSSDOMAIN = (b'<?xml version="1.0"?>\n'
               b'<!DOCTYPE cross-domain-policy SYSTEM '
               b'"http://www.adobe.com/xml/dtds/cross-domain-policy.dtd" >\n'
               b'<cross-domain-policy>\n'
               b'<allow-access-from domain="*" secure="false" />\n'
               b'</cross-domain-policy>')


def info_document(features: dict[str, Any] | None = None,
                  policies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``/info`` capabilities document: only what this server does;
    ``policies`` the storage policies (``swift.policies``).

    ``slo`` tells swiftclient to upload large files as SLOs; ``bulk_delete``
    lets it delete many objects per request.  DLOs need no announcement
    (swiftclient uses them when ``slo`` is absent or ``--use-slo`` is not
    given).  ``pithos`` names the block size and hash of hashmap uploads.
    """
    return {
        "swift": {
            "version": SWIFT_API_VERSION,
            "max_file_size": MAX_FILE_SIZE,
            "max_meta_name_length": rules.MAX_META_NAME,
            "max_meta_value_length": rules.MAX_META_VALUE,
            "max_meta_count": rules.MAX_META_KEYS,
            "max_meta_overall_size": rules.MAX_META_OVERALL,
            "max_object_name_length": rules.MAX_OBJECT_NAME,
            "max_container_name_length": rules.MAX_CONTAINER_NAME,
            "max_account_name_length": rules.MAX_ACCOUNT_NAME,
            "container_listing_limit": rules.MAX_LIST,
            "account_listing_limit": rules.MAX_LIST,
            "account_autocreate": True,
            "max_header_size": rules.MAX_HEADER_SIZE,
            "extra_header_count": rules.EXTRA_HEADER_COUNT,
            "valid_api_versions": ["v1"],
            **({"policies": policies} if policies else {}),
        },
        "slo": {
            "max_manifest_segments": MAX_MANIFEST_SEGMENTS,
            "max_manifest_size": MAX_MANIFEST_SIZE,
            "min_segment_size": 1,
        },
        "bulk_delete": {
            "max_deletes_per_request": MAX_DELETES_PER_REQUEST,
            "max_failed_deletes": MAX_FAILED_DELETES,
        },
        "pithos": {"block_size": BLOCK_SIZE, "block_hash": HASH_ALGORITHM},
        "crossdomain": {},
        "healthcheck": {},
        **(features or {}),
    }


# -- /info and /auth/v1.0 -----------------------------------------------------


class InfoResource(GetLeaf):
    """``GET``/``HEAD /info``: ``document()`` (by default
    ``info_document()``) as JSON (no token)."""

    def __init__(self, document: Callable[[], dict[str, Any]] | None = None):
        super().__init__()
        self._document = document or info_document

    async def answer(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return json.dumps(self._document()).encode("utf-8")


class AuthV1Resource(GetLeaf):
    """``GET /auth/v1.0``: Swift's v1 authentication, the OOS way.

    ``X-Auth-User`` (or ``X-Storage-User``) is the user's uuid or email,
    ``X-Auth-Key`` (or ``X-Storage-Pass``) a Synnefo token of that user.
    The token is validated by ``authenticator``; the answer is 200 with
    ``X-Storage-Url`` (``<public_url>/<storage_path>/<uuid>``, by default
    ``object-store/v1``),
    ``X-Auth-Token`` and ``X-Storage-Token`` (the same token) and, when
    the token has an expiry, ``X-Auth-Token-Expires`` (seconds left).
    Missing headers, an invalid token or a user that does not match: 401.

    Mounted at ``/auth`` it answers ``/auth/v1.0`` and ``/auth/v1.0/``;
    mounted at ``.../v1.0`` it answers there.
    """

    paths = ([], [b""], [b"v1.0"], [b"v1.0", b""])

    def __init__(self, authenticator: Any, public_url: str,
                 clock: Callable[[], float] | None = None,
                 storage_path: str = "object-store/v1"):
        super().__init__()
        self._auth = authenticator
        self._public_url = public_url.rstrip("/")
        self._now = clock or time.time
        self._storage_path = storage_path.strip("/")

    async def answer(self, request: Any) -> bytes:
        user = _header(request, b"x-auth-user") or _header(request, b"x-storage-user")
        key = _header(request, b"x-auth-key") or _header(request, b"x-storage-pass")
        if not user or not key:
            raise errors.Unauthorized("X-Auth-User and X-Auth-Key are required.")
        principal = await self._auth.authenticate(key)
        if principal.user is None or not _same_user(user, principal):
            raise errors.Unauthorized("The token does not belong to that user.")
        url = f"{self._public_url}/{self._storage_path}/{quote(principal.user, safe='')}"
        request.setHeader(b"x-storage-url", url.encode("ascii"))
        request.setHeader(b"x-auth-token", key.encode("ascii"))
        request.setHeader(b"x-storage-token", key.encode("ascii"))
        if principal.expires_at is not None:
            left = max(0, int(principal.expires_at.timestamp() - self._now()))
            request.setHeader(b"x-auth-token-expires", str(left).encode("ascii"))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setResponseCode(200)
        return b""


def _header(request: Any, name: bytes) -> str | None:
    raw = request.getHeader(name)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            raw = unquote(raw.decode("latin-1"))
    return raw.strip() or None


def _same_user(given: str, principal: Any) -> bool:
    if given == principal.user:
        return True
    email = (principal.email or "").strip()
    return bool(email) and given.lower() == email.lower()


# -- ACLs -----------------------------------------------------------------------
#
# Swift's ACL elements map to Pithos sharing entries (user uuids,
# ``<owner>:<group>``, ``*`` and ``ANYONE``) as follows:
#
# - ``.r:*`` (any referrer, no token needed) -> ``ANYONE`` in the read list:
#   every user may read, and callers without a token too (the container's
#   own read list only; see ``snfd.pithos.permissions``).  Other referrer
#   rules (``.r:example.com``, ``.r:-x``) cannot be honoured: 400.
# - ``.rlistings`` is accepted and dropped: in Pithos whoever may read may
#   list.  A read list holding ``ANYONE`` reads back as ``.r:*,.rlistings``.
# - ``*:*`` and ``*`` -> ``*``: every authenticated user (reads back as
#   ``*:*``).
# - ``<uuid>`` (Swift: "any user of account <uuid>") -> that user, since a
#   Synnefo account has exactly one user.  ``<uuid>:<uuid>``, ``<uuid>:*``
#   and ``*:<uuid>`` denote that user too.
# - ``<owner>:<group>`` (two different names, neither ``*``) is a Pithos
#   group of the account ``<owner>`` (``X-Account-Group-<group>``).
# - ``system:<uuid>:<user name>`` (Swift's ``<project>:<user>`` by name, for
#   a user's own project, which has that one member) -> that user.
# - ``<project id>:<user id>`` (both uuids: Keystone's ids) -> that user
#   (Pithos shares with users, not with a user acting in one project).
#
# Entries are stripped of spaces and lowercased, as Pithos sharing is;
# ``ANYONE``, else ``*``, absorbs the other entries of its list.

_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}")
_REFERRER_PREFIXES = (".r:", ".ref:", ".referer:", ".referrer:")
ACCOUNT_ACL_KEYS = ("admin", "read-write", "read-only")


def _entry(item: str, header: str) -> str:
    if item.count(":") == 2 and item.startswith("system:"):
        # ``<project name>:<user name>`` where the project is a user's own
        # (Keystone names it ``system:<uuid>``): its one member, that user.
        return item.split(":")[1]
    user, sep, second = item.partition(":")
    if not sep:
        return item
    if not user or not second:
        raise errors.BadRequest(f"{header}: {item!r} is not a valid ACL element.")
    if user == "*":
        return second
    if second == "*" or second == user:
        return user
    if _UUID.fullmatch(user) and _UUID.fullmatch(second):
        return second
    return item


def _entries(items: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    items = list(items)
    if ANYONE in items:
        return (ANYONE,)
    for item in items:
        if item == "*":
            return ("*",)
        if item not in out:
            out.append(item)
    return tuple(out)


def _acl_list(value: str | None, header: str, read: bool) -> tuple[str, ...]:
    if value is None:
        return ()
    items: list[str] = []
    for raw in value.split(","):
        item = "".join(raw.split()).lower()
        if not item:
            continue
        if item == ".rlistings":
            if not read:
                raise errors.BadRequest(f"{header}: .rlistings is only for reading.")
            continue
        if item.startswith(_REFERRER_PREFIXES):
            if not read:
                raise errors.BadRequest(f"{header}: referrer elements are only for reading.")
            if item.partition(":")[2] != "*":
                raise errors.BadRequest(
                    f"{header}: referrer restrictions ({item}) are not supported;"
                    " .r:* grants reading to everyone.")
            items.append(ANYONE)
            continue
        if item.startswith("."):
            raise errors.BadRequest(f"{header}: unknown ACL element {item!r}.")
        items.append(_entry(item, header))
    return _entries(items)


def acl_to_permissions(read: str | None, write: str | None) -> Permissions:
    """Pithos sharing for ``X-Container-Read``/``X-Container-Write``
    (``None``: no such header, an empty list).  See the mapping above.

    @raise errors.BadRequest: an element that cannot be expressed.
    """
    return Permissions(read=_acl_list(read, "X-Container-Read", True),
                       write=_acl_list(write, "X-Container-Write", False))


def permissions_to_acl(p: Permissions) -> tuple[str, str]:
    """``(X-Container-Read, X-Container-Write)`` for sharing ``p``; an empty
    string means no such header.  ``*`` reads as ``.r:*,.rlistings`` and
    writes as ``*:*``."""
    read = (".r:*,.rlistings" if ANYONE in p.read else "*:*" if "*" in p.read
            else ",".join(p.read))
    write = "*:*" if "*" in p.write else ",".join(p.write)
    return read, write


def account_acl_to_permissions(value: str) -> Permissions:
    """Pithos sharing for ``X-Account-Access-Control`` (Swift's v2 JSON
    ``{"read-only": [...], "read-write": [...], "admin": [...]}``).

    ``read-only`` grants read, ``read-write`` write (which implies read);
    elements map as for containers (no referrers).  ``admin`` cannot be
    granted (only the owner administers a Pithos account): 400 unless it
    is empty.  An empty value or ``{}`` removes all sharing.

    @raise errors.BadRequest: not a JSON object, an unknown key, values
        that are not lists of strings, or an ``admin`` grant.
    """
    header = "X-Account-Access-Control"
    if not value.strip():
        return Permissions()
    try:
        acl = json.loads(value)
    except (ValueError, RecursionError):
        raise errors.BadRequest(f"{header} must be a JSON object.") from None
    if not isinstance(acl, dict):
        raise errors.BadRequest(f"{header} must be a JSON object.")
    lists: dict[str, list[str]] = {}
    for key, members in acl.items():
        if key not in ACCOUNT_ACL_KEYS:
            raise errors.BadRequest(f"{header}: unknown key {key!r}.")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise errors.BadRequest(f"{header}: {key!r} must be a list of strings.")
        lists[key] = members
    if lists.get("admin"):
        raise errors.BadRequest(
            f"{header}: 'admin' cannot be granted; only the owner administers an"
            " account (use 'read-write').")

    def convert(members: list[str]) -> tuple[str, ...]:
        out = []
        for raw in members:
            item = "".join(raw.split()).lower()
            if not item:
                continue
            if item.startswith("."):
                raise errors.BadRequest(f"{header}: unknown ACL element {item!r}.")
            out.append(_entry(item, header))
        return _entries(out)

    return Permissions(read=convert(lists.get("read-only", [])),
                       write=convert(lists.get("read-write", [])))


def permissions_to_account_acl(p: Permissions) -> str:
    """``X-Account-Access-Control`` for sharing ``p`` (compact JSON), or
    ``""`` when nothing is shared.  Write entries are ``read-write``; read
    entries not also writers are ``read-only``; ``*`` is ``*:*``."""
    def swift(entries: Iterable[str]) -> list[str]:
        return ["*:*" if e == "*" else e for e in entries]

    acl: dict[str, list[str]] = {}
    read_only = [e for e in p.read if e not in p.write and "*" not in p.write]
    if read_only:
        acl["read-only"] = swift(read_only)
    if p.write:
        acl["read-write"] = swift(p.write)
    if not acl:
        return ""
    return json.dumps(acl, separators=(",", ":"), sort_keys=True)


# -- large objects ------------------------------------------------------------


def _meta(info: ObjectInfo, key: str) -> str | None:
    value = info.meta.get(key)
    if value is not None:
        return value
    lower = key.lower()
    for k, v in info.meta.items():
        if k.lower() == lower:
            return v
    return None


def is_slo(info: ObjectInfo) -> bool:
    """Whether ``info`` is an SLO manifest."""
    return (_meta(info, SLO) or "").strip().lower() in ("true", "yes", "1", "on")


def dlo_source(info: ObjectInfo) -> tuple[str, str] | None:
    """``(container, prefix)`` of a DLO manifest (the stored
    ``X-Object-Manifest`` value -- already percent-decoded by the HTTP
    layer -- split at its first ``/``), else ``None``."""
    value = _meta(info, DLO)
    if not value:
        return None
    container, _, prefix = value.strip().lstrip("/").partition("/")
    if not container:
        return None
    return container, prefix


def segment_etag(info: ObjectInfo) -> str:
    """A segment's ETag for Swift's rules: its MD5, else its Merkle hash."""
    return info.checksum or info.hash


def manifest_etag(segments: Sequence[ObjectInfo]) -> str:
    """A DLO's ETag: MD5 of the concatenated segment ETags, quoted.

    For an SLO use ``slo_etag(info)`` (the value recorded when the
    manifest was stored, which counts a nested SLO by its own ETag)."""
    joined = "".join(segment_etag(s) for s in segments)
    return '"' + hashlib.md5(joined.encode("ascii"), usedforsecurity=False).hexdigest() + '"'


def slo_etag(info: ObjectInfo) -> str:
    """An SLO manifest's ETag as clients see it (quoted)."""
    return '"' + (_meta(info, SLO_ETAG) or "") + '"'


def slo_size(info: ObjectInfo) -> int:
    """An SLO manifest's size as clients see it (sum of its segments)."""
    try:
        return int(_meta(info, SLO_SIZE) or 0)
    except ValueError:
        return 0


T = TypeVar("T")


async def _bounded(jobs: Sequence[Callable[[], Coroutine[Any, Any, T]]]) -> list[T]:
    """Run ``jobs`` with at most ``_LOOKUPS_IN_FLIGHT`` at once, in order."""
    results: list[T] = []
    for start in range(0, len(jobs), _LOOKUPS_IN_FLIGHT):
        batch = jobs[start:start + _LOOKUPS_IN_FLIGHT]
        ds = [defer.ensureDeferred(job()) for job in batch]
        try:
            done = await defer.gatherResults(ds, consumeErrors=True)
        except defer.FirstError as e:
            e.subFailure.raiseException()
        results.extend(done)
    return results


def _split_path(path: str) -> tuple[str, str] | None:
    container, _, name = path.lstrip("/").partition("/")
    if not container or not name:
        return None
    return container, name


async def _read_data(blocks: Any, info: ObjectInfo) -> bytes:
    parts = [await read_block(blocks, h) for h in info.hashes or ()]
    return b"".join(parts)[:info.size]


def _problems(problems: list[tuple[str, str]]) -> errors.BadRequest:
    lines = "\n".join(f"{quote(path)}, {reason}" for path, reason in problems)
    return errors.BadRequest("Errors:\n" + lines)


def _parse_manifest_request(body: bytes) -> list[tuple[str, str | None, int | None]]:
    if len(body) > MAX_MANIFEST_SIZE:
        raise errors.OverLimit(f"Manifest File > {MAX_MANIFEST_SIZE} bytes")
    try:
        entries = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise errors.BadRequest("Manifest must be valid JSON.") from None
    if not isinstance(entries, list):
        raise errors.BadRequest("Manifest must be a list.")
    if not entries:
        raise errors.BadRequest("Manifest must have at least one segment.")
    if len(entries) > MAX_MANIFEST_SEGMENTS:
        raise errors.OverLimit(f"Number of segments must be <= {MAX_MANIFEST_SEGMENTS}")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise errors.BadRequest(f"Index {i}: not a JSON object")
        extra = set(entry) - {"path", "etag", "size_bytes"}
        if extra:
            raise errors.BadRequest(
                f"Index {i}: unsupported keys {', '.join(sorted(extra))}"
                " (only path, etag and size_bytes)")
        path, etag, size = entry.get("path"), entry.get("etag"), entry.get("size_bytes")
        if not isinstance(path, str) or _split_path(path) is None:
            raise errors.BadRequest(f"Index {i}: path must be /container/object")
        if etag is not None and not isinstance(etag, str):
            raise errors.BadRequest(f"Index {i}: etag must be a string or null")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                 or size < 0):
            raise errors.BadRequest(f"Index {i}: size_bytes must be a non-negative"
                                    " integer or null")
        if etag is not None:
            etag = etag.strip().strip('"').lower() or None
        out.append(("/" + path.lstrip("/"), etag, size))
    return out


async def put_slo(backend: Any, blocks: Any, user: str, account: str, container: str,
                  name: str, body: bytes, content_type: str,
                  meta: Mapping[str, str]) -> ObjectInfo:
    """Store an SLO manifest (``PUT ...?multipart-manifest=put``).

    ``body`` is Swift's JSON list of ``{"path": "/container/object",
    "etag": md5 | null, "size_bytes": int | null}``; segments live in
    ``account`` and must be readable by ``user``.  Every segment is checked
    (exists, at least 1 byte, ETag and size as given); an SLO segment is
    accepted as a nested SLO (its ETag and size are the large object's).

    The manifest's data is the canonical list Swift's
    ``multipart-manifest=get`` returns (``name``, ``hash``, ``bytes``,
    ``content_type``, ``last_modified``, ``sub_slo`` for nested SLOs),
    stored as an ordinary object with ``meta`` plus the helper meta
    (``X-Static-Large-Object``, ``X-Slo-Size``, ``X-Slo-Etag``; an
    ``X-Object-Manifest`` in ``meta`` is dropped).

    @raise errors.BadRequest: malformed JSON or entries; the segment
        problems, one ``<path>, <reason>`` line each after ``Errors:``.
    @raise errors.OverLimit: a body over ``MAX_MANIFEST_SIZE`` or more than
        ``MAX_MANIFEST_SEGMENTS`` segments.
    @return: the stored manifest version.
    """
    requested = _parse_manifest_request(body)
    own = f"/{container}/{name}"

    def lookup(path: str) -> Callable[[], Coroutine[Any, Any, ObjectInfo | str]]:
        async def job() -> ObjectInfo | str:
            seg_container, seg_name = _split_path(path)  # type: ignore[misc]
            try:
                return await backend.object(user, account, seg_container, seg_name)
            except errors.NotFound:
                return "404 Not Found"
            except errors.Fault as e:
                return _status(e.code)
        return job

    found = await _bounded([lookup(path) for path, _, _ in requested])
    problems: list[tuple[str, str]] = []
    manifest: list[dict[str, Any]] = []
    for (path, etag, size), seg in zip(requested, found, strict=True):
        if path == own:
            problems.append((path, "Manifest may not reference itself"))
            continue
        if isinstance(seg, str):
            problems.append((path, seg))
            continue
        nested = is_slo(seg)
        seg_size = slo_size(seg) if nested else seg.size
        seg_tag = (_meta(seg, SLO_ETAG) or "") if nested else segment_etag(seg)
        accepted = {seg_tag} if nested else {seg.checksum, seg.hash} - {""}
        if seg_size < 1:
            problems.append((path, "Too small; each segment must be at least 1 byte."))
        if etag is not None and etag not in accepted:
            problems.append((path, "Etag Mismatch"))
        if size is not None and size != seg_size:
            problems.append((path, "Size Mismatch"))
        entry: dict[str, Any] = {
            "name": path, "hash": seg_tag, "bytes": seg_size,
            "content_type": seg.type, "last_modified": _iso(seg.mtime)}
        if nested:
            entry["sub_slo"] = True
        manifest.append(entry)
    if problems:
        raise _problems(problems)

    total = sum(e["bytes"] for e in manifest)
    joined = "".join(e["hash"] for e in manifest)
    etag_hex = hashlib.md5(joined.encode("ascii"), usedforsecurity=False).hexdigest()
    data = json.dumps(manifest).encode("utf-8")
    size = blocks.block_size
    hashes = await blocks.put([data[i:i + size] for i in range(0, len(data), size)])
    stored = {k: v for k, v in meta.items()
              if k.lower() not in (DLO.lower(), SLO.lower(), SLO_SIZE.lower(),
                                   SLO_ETAG.lower())}
    stored.update({SLO: "True", SLO_SIZE: str(total), SLO_ETAG: etag_hex})
    return await backend.put_object(user, account, container, name, size=len(data),
                                    hashes=hashes, content_type=content_type,
                                    meta=stored)


def _iso(mtime: float) -> str:
    when = datetime.datetime.fromtimestamp(mtime, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _status(code: int) -> str:
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


async def get_slo_manifest(backend: Any, blocks: Any, user: str,
                           info: ObjectInfo) -> list[dict[str, Any]]:
    """The segment list of an SLO manifest, as stored (Swift's
    ``multipart-manifest=get`` body).  ``info`` may lack its hashmap
    (a listing entry); it is then read again at that version.

    @raise errors.BadRequest: ``info`` is not an SLO manifest.
    @raise errors.Conflict: its data is not a manifest (it was damaged).
    """
    if not is_slo(info):
        raise errors.BadRequest("Not an SLO manifest.")
    if info.hashes is None:
        info = await backend.object(user, info.account, info.container, info.name,
                                    version=info.serial)
    data = await _read_data(blocks, info)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        manifest = None
    if not isinstance(manifest, list) or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str) for e in manifest):
        raise errors.Conflict(f"The manifest of /{info.container}/{info.name} is damaged.")
    return manifest


async def segments_for(backend: Any, blocks: Any, user: str,
                       info: ObjectInfo) -> list[ObjectInfo] | None:
    """The segments whose data, concatenated, is a large object's data.

    ``user`` is whoever reads the manifest (``permissions.ANONYMOUS``
    through a public link), never its owner on their behalf: a writer of
    the manifest chooses its segments, so they are read with the reader's
    own rights.

    - DLO: the latest versions of the objects in ``<container>`` of
      ``info.account`` whose names start with ``<prefix>``, in listing
      order, that ``user`` may read (the manifest itself excluded; a
      missing container gives none).
    - SLO: the manifest's segments in order, nested SLOs expanded, each
      checked against the size and ETag the manifest recorded, each of
      which ``user`` must be able to read.
    - Anything else: ``None``.

    Segments carry their hashmaps.

    @raise errors.Conflict: an SLO segment is gone, unreadable or changed
        ("Object segment no longer valid"), or SLOs nest too deep.
    """
    if is_slo(info):
        return await _slo_segments(backend, blocks, user, info, 0)
    source = dlo_source(info)
    if source is None:
        return None
    return await _dlo_segments(backend, user, info, *source)


async def _dlo_segments(backend: Any, user: str, info: ObjectInfo, container: str,
                        prefix: str) -> list[ObjectInfo]:
    names: list[str] = []
    marker: str | None = None
    while True:
        try:
            page = await backend.objects(user, info.account, container, prefix=prefix,
                                         marker=marker, limit=rules.MAX_LIST)
        except (errors.NotFound, errors.Forbidden):  # none the caller may read
            return []
        for entry in page:
            if isinstance(entry, Subdir):
                continue
            if container == info.container and entry.name == info.name:
                continue
            names.append(entry.name)
        if len(page) < rules.MAX_LIST:
            break
        last = page[-1]
        marker = last.name

    def lookup(name: str) -> Callable[[], Coroutine[Any, Any, ObjectInfo | None]]:
        async def job() -> ObjectInfo | None:
            try:
                return await backend.object(user, info.account, container, name)
            except (errors.NotFound, errors.Forbidden):  # deleted since the listing
                return None
        return job

    found = await _bounded([lookup(n) for n in names])
    return [s for s in found if s is not None]


async def _slo_segments(backend: Any, blocks: Any, user: str, info: ObjectInfo,
                        depth: int) -> list[ObjectInfo]:
    if depth >= MAX_SLO_DEPTH:
        raise errors.Conflict(f"SLOs nest deeper than {MAX_SLO_DEPTH} levels.")
    manifest = await get_slo_manifest(backend, blocks, user, info)

    def lookup(entry: dict[str, Any]) -> Callable[[], Coroutine[Any, Any, ObjectInfo]]:
        async def job() -> ObjectInfo:
            path = entry["name"]
            where = _split_path(path)
            if where is None:
                raise errors.Conflict(f"Object segment no longer valid: {path}")
            try:
                seg = await backend.object(user, info.account, *where)
            except errors.Fault as e:
                raise errors.Conflict(
                    f"Object segment no longer valid: {path} ({_status(e.code)})") from None
            if entry.get("sub_slo"):
                same = is_slo(seg) and (_meta(seg, SLO_ETAG) or "") == entry.get("hash")
            else:
                same = (not is_slo(seg) and seg.size == entry.get("bytes")
                        and entry.get("hash") in {seg.checksum, seg.hash})
            if not same:
                raise errors.Conflict(f"Object segment no longer valid: {path} (changed)")
            return seg
        return job

    found = await _bounded([lookup(e) for e in manifest])
    out: list[ObjectInfo] = []
    for entry, seg in zip(manifest, found, strict=True):
        if entry.get("sub_slo"):
            out.extend(await _slo_segments(backend, blocks, user, seg, depth + 1))
        else:
            out.append(seg)
    return out


def _summary() -> dict[str, Any]:
    return {"Number Deleted": 0, "Number Not Found": 0, "Errors": [],
            "Response Status": "200 OK", "Response Body": ""}


async def delete_slo(backend: Any, blocks: Any, user: str, account: str, container: str,
                     name: str) -> dict[str, Any]:
    """Delete an SLO manifest and its segments
    (``DELETE ...?multipart-manifest=delete``).

    Segments are deleted in manifest order (a nested SLO's segments, then
    its manifest), then the manifest.  Returns Swift's bulk summary
    (``Number Deleted``, ``Number Not Found``, ``Errors`` as
    ``[[quoted path, status]]``, ``Response Status``, ``Response Body``);
    any error makes the status ``400 Bad Request``.  A missing manifest
    counts as not found; an object that is not an SLO is left alone with
    the error ``Not an SLO manifest``.
    """
    summary = _summary()
    path = f"/{container}/{name}"
    try:
        info = await backend.object(user, account, container, name)
    except errors.NotFound:
        summary["Number Not Found"] = 1
        return summary
    if not is_slo(info):
        summary["Errors"].append([quote(path), "Not an SLO manifest"])
        summary["Response Status"] = _status(400)
        return summary
    targets = await _slo_targets(backend, blocks, user, info, 0)
    targets.append(path)
    for target in targets:
        await _delete_one(backend, user, account, target, summary)
    if summary["Errors"]:
        summary["Response Status"] = _status(400)
    return summary


async def _slo_targets(backend: Any, blocks: Any, user: str, info: ObjectInfo,
                       depth: int) -> list[str]:
    """Paths to delete for the segments of ``info``, nested ones first."""
    out: list[str] = []
    for entry in await get_slo_manifest(backend, blocks, user, info):
        path = entry["name"]
        if entry.get("sub_slo") and depth + 1 < MAX_SLO_DEPTH:
            where = _split_path(path)
            if where is not None:
                try:
                    sub = await backend.object(user, info.account, *where)
                except errors.Fault:
                    sub = None
                if sub is not None and is_slo(sub):
                    out.extend(await _slo_targets(backend, blocks, user, sub, depth + 1))
        out.append(path)
    return out


async def _delete_one(backend: Any, user: str, account: str, path: str,
                      summary: dict[str, Any]) -> None:
    container, _, name = path.lstrip("/").partition("/")
    try:
        if not container:
            raise errors.BadRequest("No container.")
        if name:
            await backend.delete_object(user, account, container, name)
        else:
            await backend.delete_container(user, account, container)
    except errors.NotFound:
        summary["Number Not Found"] += 1
    except errors.Fault as e:
        summary["Errors"].append([quote(path), _status(e.code)])
    else:
        summary["Number Deleted"] += 1


async def bulk_delete(backend: Any, user: str, account: str, body: bytes) -> dict[str, Any]:
    """Swift's bulk delete (``POST /v1/<account>?bulk-delete``).

    ``body`` holds one URL-encoded ``/container/object`` (delete that
    object) or ``/container`` (delete that container, which must be empty)
    per line.  Deletions run in order.  Returns Swift's summary (see
    ``delete_slo``): not found items are counted, others that fail are
    listed in ``Errors`` with their status and make the status
    ``400 Bad Request``.  More than ``MAX_DELETES_PER_REQUEST`` lines
    deletes nothing (``413``); after ``MAX_FAILED_DELETES`` failures the
    rest is skipped.
    """
    summary = _summary()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        summary["Response Status"] = _status(400)
        summary["Response Body"] = "Invalid UTF-8 in the request body."
        return summary
    lines = [line.strip() for line in text.splitlines()]
    paths = [unquote(line) for line in lines if line]
    if len(paths) > MAX_DELETES_PER_REQUEST:
        summary["Response Status"] = _status(413)
        summary["Response Body"] = (
            f"Maximum Bulk Deletes: {MAX_DELETES_PER_REQUEST} per request")
        return summary
    for path in paths:
        if len(summary["Errors"]) >= MAX_FAILED_DELETES:
            summary["Response Body"] = "Max delete failures exceeded"
            break
        await _delete_one(backend, user, account, "/" + path.lstrip("/"), summary)
    if summary["Errors"]:
        summary["Response Status"] = _status(400)
    return summary


__all__ = [
    "AuthV1Resource",
    "InfoResource",
    "account_acl_to_permissions",
    "acl_to_permissions",
    "bulk_delete",
    "delete_slo",
    "dlo_source",
    "get_slo_manifest",
    "info_document",
    "is_slo",
    "manifest_etag",
    "permissions_to_account_acl",
    "permissions_to_acl",
    "put_slo",
    "segment_etag",
    "segments_for",
    "slo_etag",
    "slo_size",
]
