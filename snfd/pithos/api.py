"""The object store's HTTP API: OpenStack Swift v1 with the Pithos
extensions (reference section 2), over ``Backend`` and the block store.

``PithosAPI.resource()`` serves ``/object-store/v1/...`` (the node wraps
it in ``TokenAuth``, which leaves the caller on ``request.principal``);
``PithosAPI.public_resource()`` serves public links, ``/public/<token>``,
without authentication.

Paths: ``/v1`` and ``/v1/`` (accounts sharing with the caller),
``/v1/<account>``, ``/v1/<account>/<container>`` and
``/v1/<account>/<container>/<object>``.  The account and container
segments are percent-decoded one by one (so ``%2F`` inside them is a 400:
they cannot hold ``/``); the object name is everything after the
container, percent-decoded, ``/`` kept.  Names must be UTF-8, without
NUL, not empty, at most 256 (account, container) or 1024 (object)
characters, else 400.  Names are keys, not file paths: ``.``, ``..`` and
``a/../b`` are ordinary object names (as in Swift).

ETag: the object's MD5 when it is known (uploads through the API always
compute it; after a hashmap upload or a partial update it is computed in
the background, see ``PithosAPI.drain``), else its Merkle hash
(``X-Object-Hash``).  Large objects (Swift DLO/SLO, ``snfd.pithos.swift``)
have the quoted ETag of Swift's rules.  The hash travels unquoted, as
Pithos and Swift send it for plain objects.

Deliberate differences from the reference, for Swift clients:

- An object ``PUT`` without ``Content-Type`` is not a 411 (``swift
  upload`` sends none): the type is guessed from the name, else
  ``application/octet-stream``.
- A container or account ``POST`` without ``?update`` replaces the user
  metadata only when it carries metadata headers; a bare ``POST`` (an ACL
  or policy change) leaves them alone.  Object ``POST`` always follows
  the reference (and Swift): without ``?update`` the metadata given
  replace the old.
- Block uploads (container ``POST`` with data) are open to every user who
  can see the container (a write is checked when a hashmap names the
  blocks).  They are recorded for the uploader, whose blocks no object
  references yet are bounded by its remaining diskspace (413 beyond).
  A hashmap may name only blocks its caller uploaded or can read in an
  object; any other counts as missing in the 409, whether it exists or
  not (no cross-tenant oracle).
- An object ``PUT`` whose length the container or account quota cannot
  hold is a 413 before any of its blocks is stored.

Errors are ``snfd.errors`` faults rendered by ``render_fault``; the only
other error body is the 409 of a hashmap upload, the JSON list of the
missing block hashes (the protocol the reference defines).

This module holds ``PithosAPI`` and its handlers, one per level and
method (``_ROUTES``).  What they share lives beside it: the request
rules and ``Reply`` in ``snfd.pithos.requests``, the listings in their
three formats in ``snfd.pithos.listings``, request bodies (streamed
uploads and their gate) and the background MD5s in
``snfd.pithos.uploads``, what a GET sends in ``snfd.pithos.downloads``,
the limits in ``snfd.pithos.rules``.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from snfd import errors
from snfd.pithos import (
    bulk,
    cors,
    downloads,
    expiry,
    listings,
    staticweb,
    swift,
    swift_quotas,
    symlinks,
    updates,
    versioning,
)
from snfd.pithos import headers as hdr
from snfd.pithos.backend import ANONYMOUS, KEEP, MissingBlocks
from snfd.pithos.formpost import FormPost
from snfd.pithos.hashmap import EMPTY_HASH, HASH_ALGORITHM, HashmapError, checked_hashmap
from snfd.pithos.listings import TEXT, json_reply
from snfd.pithos.middleware import Filter, chain, container_settings, info_sections
from snfd.pithos.model import ContainerInfo, ObjectInfo, Permissions, Subdir
from snfd.pithos.object_versioning import ObjectVersioning
from snfd.pithos.permissions import readable_by_all
from snfd.pithos.requests import (
    OCTET_STREAM,
    TRUE,
    Call,
    Reply,
    Target,
    media_type,
    parse_target,
    query_args,
    raw_postpath,
    respond,
    swift_style,
)
from snfd.pithos.rules import MAX_CONTAINER_NAME, MAX_OBJECT_NAME
from snfd.pithos.streams import BlockSink, read_range
from snfd.pithos.tempurl import TempURL
from snfd.pithos.uploads import (
    Checksums,
    Uploads,
    has_body,
    hashmap_doc,
    small_body,
    streamed,
)

log = Logger(namespace="snfd.pithos")
_TOKEN = re.compile(r"^[0-9A-Za-z]{1,64}$")
UNAUTHORIZED = "This request needs a token (X-Auth-Token)."
"""Swift's 401 to a caller without a token who may not do what it asks."""


# -- the API --------------------------------------------------------------------


class PithosAPI:
    """Builds the object store's resources; see the module docstring.

    @param backend: the ``Backend``.
    @param blocks: the ``IBlockStore`` (``block_size``, ``put``, ``get``),
        or with several storage policies their ``PolicyBlocks`` view
        (reads find a block in any policy; uploads are placed in their
        container's policy, see ``Uploads``).
    @param reactor: the reactor (its thread pool hashes).
    @param public_url: base URL of the cluster; public links are
        ``<public_url>/public/<token>``, storage URLs
        ``<public_url>/object-store/v1/<account>``.
    @param authenticator: the node's ``IAuthenticator``, which lets
        streamed uploads be refused before their data is stored
        (``None``: request bodies are buffered and checked after).
    @param blocks_in_flight: blocks of one upload stored at once.
    """

    storage_path = "object-store/v1"
    """Where the object store's storage URLs point, below ``public_url``
    (``[pithos] storage_url_path``)."""

    def __init__(self, backend: Any, blocks: Any, reactor: Any, public_url: str,
                 authenticator: Any = None, *, blocks_in_flight: int = 2):
        self.backend = backend
        self.blocks = blocks
        self.reactor = reactor
        self.public_url = public_url.rstrip("/")
        self.uploads = Uploads(backend, blocks, reactor, authenticator,
                               blocks_in_flight=blocks_in_flight)
        self.checksums = Checksums(backend, blocks, reactor)
        self.filters: list[Filter] = [make(self) for make in FILTERS]
        self._handler = chain(self.filters, self.dispatch)

    def info(self) -> dict[str, Any]:
        """The ``GET /info`` document: Swift's limits and each served feature."""
        return swift.info_document(info_sections(self.filters),
                                   policies=self.backend.policies.info())

    def resource(self) -> Resource:
        """The ``/object-store`` resource."""
        return _ObjectStore(self)

    def public_resource(self) -> Resource:
        """The ``/public`` resource."""
        return _Public(self)

    async def drain(self) -> None:
        """Wait for the background work started so far (MD5 computations
        after hashmap uploads and partial updates)."""
        await self.checksums.drain()

    async def handle(self, request: Any) -> Reply:
        """Route one ``/object-store`` request."""
        segments = raw_postpath(request)
        if len(segments) <= 2 and segments[:1] in ([b"info"], [b"healthcheck"],
                                                   [b"crossdomain.xml"]) \
                and not any(segments[1:]):
            if request.method not in (b"GET", b"HEAD"):
                raise errors.MethodNotAllowed("Use GET.", headers={"Allow": "GET, HEAD"})
            if segments[0] == b"info":
                return json_reply(self.info())
            if segments[0] == b"healthcheck":
                return Reply(200, body=b"OK", content_type=TEXT)
            return Reply(200, body=swift.CROSSDOMAIN, content_type="application/xml")
        hdr.check_header_limits(request)
        target = parse_target(segments)
        method = request.method.decode("ascii", "replace").upper()
        call = Call(request, method, target, query_args(request))
        return await self._handler(call)

    async def dispatch(self, call: Call) -> Reply:
        """The handler of ``call``'s level and method (after the filters)."""
        method, target = call.method, call.target
        routes = _ROUTES[target.level]
        handler = routes.get(method)
        if handler is None:
            allowed = ", ".join(sorted(routes))
            raise errors.MethodNotAllowed(
                f"{method} is not allowed here (allowed: {allowed}).",
                headers={"Allow": allowed})
        if call.anonymous and method in ("GET", "HEAD") and \
                target.level in ("container", "object"):
            return await self._anonymous_read(call, handler)
        reply: Reply = await handler(self, call)
        return reply

    async def _anonymous_read(self, call: Call,
                              handler: Callable[[PithosAPI, Call], Awaitable[Reply]]) -> Reply:
        """A read without a token, as Swift answers it: 401 unless everyone
        may read the container (``X-Container-Read: .r:*``), whatever is in
        it (public objects are read through their links); then the handler
        reads as ``ANONYMOUS`` (a 404 for what is missing or hidden by a
        closer sharing), and any other refusal is a 401 too."""
        t = call.target
        assert t.account is not None and t.container is not None
        info = await container_settings(call, self.backend, t.account, t.container)
        if info is None or not readable_by_all(info.sharing):
            raise errors.Unauthorized(UNAUTHORIZED)
        try:
            reply: Reply = await handler(self, call)
        except errors.Forbidden as e:
            raise errors.Unauthorized(UNAUTHORIZED, headers=e.headers) from None
        return reply

    def body_sink(self, request: Any, method: bytes, uri: bytes,
                  length: int | None) -> BlockSink | None:
        """Where the body of a request whose headers have arrived goes
        (``snfd.web.site``): a ``BlockSink`` behind a gate, or ``None``
        (buffered); see ``Uploads.body_sink``."""
        return self.uploads.body_sink(request, method, uri, length)

    def body_limit(self, request: Any, method: bytes, uri: bytes) -> int:
        """The largest body buffered for a request (``snfd.web.site``); see
        ``Uploads.body_limit``."""
        return self.uploads.body_limit(request, method, uri)

    # -- pieces of replies ---------------------------------------------------------

    def public_link(self, token: str) -> str:
        return f"{self.public_url}/public/{token}"

    def _object_headers(self, info: ObjectInfo, user: str | None, etag: str,
                        last_modified: float) -> list[tuple[str, str]]:
        out = [
            ("ETag", etag),
            ("Last-Modified", hdr.http_date(last_modified)),
            ("X-Timestamp", hdr.x_timestamp(info.mtime)),
            ("Accept-Ranges", "bytes"),
            ("X-Object-Hash", info.hash),
            ("X-Object-UUID", info.uuid),
            ("X-Object-Version", str(info.serial)),
            ("X-Object-Version-Timestamp", hdr.timestamp(info.mtime)),
            ("X-Object-Modified-By", info.muser),
        ]
        for key, value in sorted(info.meta.items()):
            if key.startswith("X-Object-Meta-") or key in hdr.CONTENT_HEADERS:
                out.append((key, value))
            elif key == swift.SLO:
                out.append((key, "True"))
        if info.sharing:
            out.append(("X-Object-Sharing", hdr.format_sharing(info.sharing)))
        if info.shared_by:
            out.append(("X-Object-Shared-By", info.shared_by))
        if info.allowed_to and user != info.account:
            out.append(("X-Object-Allowed-To", info.allowed_to))
        if info.public and user == info.account:
            out.append(("X-Object-Public", self.public_link(info.public)))
        return out

    # -- top level -------------------------------------------------------------------

    async def top_get(self, call: Call) -> Reply:
        """Accounts sharing with the caller, or the v1-auth dummy answer."""
        if getattr(call.request, "principal", None) is None:
            auth_user = call.header("X-Auth-User")
            auth_key = call.header("X-Auth-Key")
            if auth_user and auth_key:
                url = (f"{self.public_url}/{self.storage_path}/"
                       f"{quote(auth_user.strip(), safe='')}")
                return Reply(204, [("X-Auth-Token", auth_key.strip()),
                                   ("X-Storage-Token", auth_key.strip()),
                                   ("X-Storage-Url", url)])
        user = call.user
        fmt = call.fmt()
        sharers = [] if call.integer("limit") == 0 else await self.backend.sharers(
            user, marker=call.text_param("marker") or None, limit=call.limit())
        return listings.accounts(sharers, fmt)

    # -- accounts --------------------------------------------------------------------

    async def _account_headers(self, call: Call) -> list[tuple[str, str]]:
        t = call.target
        assert t.account is not None
        user = call.user
        until = call.epoch()
        info = await self.backend.account(user, t.account, until)
        latest = info if until is None else await self.backend.account(user, t.account)
        hdr.check_preconditions(call.request, None, latest.mtime,
                                reading=call.method in ("GET", "HEAD"))
        out = [("Last-Modified", hdr.http_date(latest.mtime)),
               ("X-Timestamp", hdr.x_timestamp(latest.mtime))]
        if user != t.account:
            return out
        out += [("X-Account-Container-Count", str(info.count)),
                ("X-Account-Object-Count", str(info.objects)),
                ("X-Account-Bytes-Used", str(info.bytes))]
        for name, (containers, objects, size) in sorted(info.storage.items()):
            out += [(f"X-Account-Storage-Policy-{name}-Container-Count", str(containers)),
                    (f"X-Account-Storage-Policy-{name}-Object-Count", str(objects)),
                    (f"X-Account-Storage-Policy-{name}-Bytes-Used", str(size))]
        if until is not None:
            out.append(("X-Account-Until-Timestamp", hdr.timestamp(info.until or until)))
        for name, members in sorted(info.groups.items()):
            out.append((f"X-Account-Group-{hdr.normal_key(name)}", ",".join(members)))
        for project, quota in sorted(info.quotas.items()):
            out.append((f"X-Account-Policy-Quota-{project}", str(quota)))
        out.append(("X-Account-Policy-Quota", str(sum(info.quotas.values()))))
        for key, value in sorted(info.meta.items()):
            out.append((swift_quotas.shown_key(key), value))
        if info.sharing:
            out.append(("X-Account-Access-Control",
                        swift.permissions_to_account_acl(info.sharing)))
        return out

    async def account_head(self, call: Call) -> Reply:
        return Reply(204, await self._account_headers(call))

    async def account_get(self, call: Call) -> Reply:
        """The container listing."""
        t = call.target
        assert t.account is not None
        user = call.user
        headers = await self._account_headers(call)
        until = call.epoch()
        fmt = call.fmt()
        containers: list[ContainerInfo | Subdir] = []
        if call.integer("limit") != 0:
            containers = await self._containers(call, user, until)
        return listings.containers(t.account, containers, user == t.account, until, fmt,
                                   headers)

    async def _containers(self, call: Call, user: str,
                          until: float | None) -> list[ContainerInfo | Subdir]:
        """An account's containers as listed; with a ``delimiter`` the
        names holding it after the ``prefix`` are rolled up into one
        ``Subdir`` each, as Swift's account listings do
        (``swift.account.backend.list_containers_iter``): a page ends at
        a subdir and the next skips every name below it; a ``marker``
        equal to a subdir resumes after it."""
        t = call.target
        assert t.account is not None
        marker = call.text_param("marker") or None
        end_marker = call.text_param("end_marker") or None
        prefix = call.text_param("prefix") or ""
        delimiter = call.text_param("delimiter") or None
        limit, reverse = call.limit(), call.truthy("reverse")

        def page(marker: str | None, end_marker: str | None,
                 count: int) -> Awaitable[list[ContainerInfo]]:
            return self.backend.containers(  # type: ignore[no-any-return]
                user, t.account, marker=marker, end_marker=end_marker, prefix=prefix,
                limit=count, reverse=reverse, shared=call.flag("shared"),
                public=call.flag("public"), until=until)

        if delimiter is None:
            return list(await page(marker, end_marker, limit))
        out: list[ContainerInfo | Subdir] = []
        given_marker = marker
        while len(out) < limit:
            asked = limit - len(out)
            found = await page(marker, end_marker, asked)
            if not found:
                break
            for c in found:
                end = c.name.find(delimiter, len(prefix))
                if end < 0:
                    out.append(c)
                    marker = c.name
                    continue
                sub = c.name[:end + len(delimiter)]
                if sub != given_marker:
                    out.append(Subdir(sub))
                # Skip the rest of the subdir: descending, below it;
                # ascending, past every name it starts (names are at most
                # MAX_CONTAINER_NAME characters, U+10FFFF sorts last).
                marker = sub if reverse else sub + "\U0010ffff" * MAX_CONTAINER_NAME
                break
            else:
                if len(found) < asked:
                    break
        return out[:limit]

    async def account_post(self, call: Call) -> Reply:
        """Metadata, groups and ACL; or a Swift bulk delete."""
        t = call.target
        assert t.account is not None
        user = call.user
        if call.flag("bulk-delete"):
            return await self._bulk_delete(call)
        meta = hdr.meta_headers(call.request, "Account")
        groups = hdr.group_headers(call.request)
        replace = not call.flag("update")
        acl = call.header("X-Account-Access-Control")
        permissions = KEEP if acl is None else swift.account_acl_to_permissions(acl)
        if meta is not None or groups is not None or permissions is not KEEP:
            await self.backend.update_account(user, t.account, meta, replace, groups,
                                              permissions)
        return Reply(204)

    async def account_delete(self, call: Call) -> Reply:
        if call.flag("bulk-delete"):
            call.user  # noqa: B018 -- 401 before reading the body
            return await self._bulk_delete(call)
        raise errors.MethodNotAllowed("Accounts are not deleted through this API.",
                                      headers={"Allow": "HEAD, GET, POST"})

    async def _bulk_delete(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None
        summary = await swift.bulk_delete(self.backend, call.user, t.account,
                                          small_body(call.request))
        return listings.bulk_summary(summary, call.fmt())

    # -- containers ------------------------------------------------------------------

    async def _container_headers(self, call: Call) -> list[tuple[str, str]]:
        t = call.target
        assert t.account is not None and t.container is not None
        user = call.user
        until = call.epoch()
        info = await self.backend.container(user, t.account, t.container, until)
        latest = info if until is None else await self.backend.container(
            user, t.account, t.container)
        hdr.check_preconditions(call.request, None, latest.mtime,
                                reading=call.method in ("GET", "HEAD"))
        out = [("Last-Modified", hdr.http_date(latest.mtime)),
               ("X-Timestamp", hdr.x_timestamp(latest.mtime)),
               ("X-Container-Block-Size", str(self.blocks.block_size)),
               ("X-Container-Block-Hash", HASH_ALGORITHM)]
        if until is not None:
            out.append(("X-Container-Until-Timestamp", hdr.timestamp(info.until or until)))
        out += [("X-Container-Object-Count", str(info.count)),
                ("X-Container-Bytes-Used", str(info.bytes)),
                ("X-Storage-Policy", self.backend.policies.of(info.policy.storage).name)]
        if user != t.account:
            return out
        if info.object_meta:
            out.append(("X-Container-Object-Meta", ",".join(info.object_meta)))
        out += [("X-Container-Policy-Quota", str(info.policy.quota)),
                ("X-Container-Policy-Versioning", info.policy.versioning),
                ("X-Container-Policy-Project", info.policy.project)]
        for key, value in sorted(info.meta.items()):
            out.append((key, value))
        if info.sharing:
            read, write = swift.permissions_to_acl(info.sharing)
            if read:
                out.append(("X-Container-Read", read))
            if write:
                out.append(("X-Container-Write", write))
        return out

    async def container_head(self, call: Call) -> Reply:
        return Reply(204, await self._container_headers(call))

    async def container_get(self, call: Call) -> Reply:
        """The object listing (reference 2.5)."""
        t = call.target
        assert t.account is not None and t.container is not None
        user = call.user
        headers = await self._container_headers(call)
        fmt = call.fmt()
        prefix = call.text_param("prefix") or ""
        delimiter = call.text_param("delimiter") or None
        path = call.text_param("path")
        path_mode = path is not None
        if path is not None:
            prefix = path if not path or path.endswith("/") else path + "/"
            delimiter = "/"
        meta_filters = [m.strip() for m in (call.text_param("meta") or "").split(",")
                        if m.strip()]
        entries: list[ObjectInfo | Subdir] = []
        if call.integer("limit") != 0:
            entries = await self.backend.objects(
                user, t.account, t.container, prefix=prefix, delimiter=delimiter,
                marker=call.text_param("marker") or None,
                end_marker=call.text_param("end_marker") or None, limit=call.limit(),
                reverse=call.truthy("reverse"), path_mode=path_mode,
                meta_filters=meta_filters, shared=call.flag("shared"),
                public=call.flag("public"), until=call.epoch())
        return listings.objects(t.container, entries, user, self.public_link, fmt, headers)

    def _container_acl(self, call: Call, current: Permissions | None) -> Permissions | None:
        read, write = call.header("X-Container-Read"), call.header("X-Container-Write")
        if read is None and write is None:
            return KEEP
        old_read, old_write = swift.permissions_to_acl(current or Permissions())
        return swift.acl_to_permissions(old_read if read is None else read,
                                        old_write if write is None else write)

    async def container_put(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None
        user = call.user
        policy = hdr.policy_headers(call.request) or {}
        meta = hdr.meta_headers(call.request, "Container") or {}
        created = await self.backend.put_container(user, t.account, t.container, policy, meta,
                                                   call.header("X-Storage-Policy"))
        if call.header("X-Container-Read") is not None or \
                call.header("X-Container-Write") is not None:
            current = None
            if not created:
                current = (await self.backend.container(user, t.account, t.container)).sharing
            await self.backend.update_container(user, t.account, t.container, None, False,
                                                None, self._container_acl(call, current))
        return Reply(201 if created else 202)

    async def container_post(self, call: Call) -> Reply:
        """Metadata, policy and ACL changes, and block uploads."""
        t = call.target
        assert t.account is not None and t.container is not None
        request = call.request
        try:
            user = call.user
            meta = hdr.meta_headers(request, "Container")
            policy = hdr.policy_headers(request)
            replace = not call.flag("update")
            permissions = KEEP
            if call.header("X-Container-Read") is not None or \
                    call.header("X-Container-Write") is not None:
                current = await self.backend.container(user, t.account, t.container)
                permissions = self._container_acl(call, current.sharing)
            changed = meta is not None or policy is not None or permissions is not KEEP
            if changed:
                await self.backend.update_container(user, t.account, t.container, meta,
                                                    replace, policy, permissions)
            uploading = streamed(request) or (
                media_type(call.header("Content-Type")) == OCTET_STREAM
                and has_body(request))
            if not changed and not streamed(request):
                await self.backend.container(user, t.account, t.container)  # 404?
            if not uploading:
                return Reply(204)
            buffered = self.uploads.buffered_size(request)
            blocks = None  # a streamed body's gate placed it already
            if buffered is not None:
                blocks = await self.uploads.check_writer(user, t, "blocks")
                await self.uploads.reserve(request, user, buffered)
            # Not committed: ``settle`` records the blocks as the user's uploads.
            size, hashes, _ = await self.uploads.stored(request, user, blocks)
        finally:
            await self.uploads.settle(request)
        if size == 0:
            return Reply(202)
        return listings.blocks(hashes, call.fmt(default="json"))

    async def container_delete(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None
        await self.backend.delete_container(call.user, t.account, t.container,
                                            until=call.epoch(),
                                            delimiter=call.text_param("delimiter") or None)
        return Reply(204)

    # -- objects: reading ------------------------------------------------------------

    @staticmethod
    def _version(call: Call) -> int | None:
        value = call.get("version")
        if value is None or value == "":
            return None
        if not value.isdigit():
            raise errors.BadRequest("The parameter version must be a version id or 'list'.")
        return int(value)

    async def object_get(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        fmt = call.fmt()
        if call.get("version") == "list":
            return await self._versions(call, fmt)
        version = self._version(call)
        try:
            info = await self.backend.object(user, t.account, t.container, t.name, version)
        except errors.NotFound:
            # swob: "If-Match: *" and no object is a 412, not a 404.
            if_match = call.header("If-Match")
            if if_match is not None and "*" in [v.strip() for v in if_match.split(",")]:
                raise errors.PreconditionFailed("There is no such object.") from None
            raise
        if info.deleted:
            raise errors.NotFound("That version is a deletion.")
        latest = info.mtime
        if version is not None:
            try:
                latest = (await self.backend.object(user, t.account, t.container,
                                                    t.name)).mtime
            except errors.NotFound:
                pass
        if call.flag("hashmap") and fmt != "text":
            return self._hashmap_reply(call, info, latest, fmt)
        manifest_get = call.get("multipart-manifest") == "get"
        reading = call.method == "GET"
        parts, size, etag = await downloads.content(self.backend, self.blocks, user, info,
                                                    manifest_get, reading)
        hdr.check_preconditions(call.request, etag, latest, reading=True)
        headers = self._object_headers(info, user, etag, latest)
        headers = self._disposition(call, headers, info)
        if manifest_get and swift.is_slo(info):
            manifest = await swift.get_slo_manifest(self.backend, self.blocks, user, info)
            return json_reply(manifest, headers=headers)
        return downloads.body_reply(self.blocks, call, headers, parts, size, info.type, etag,
                                    latest)

    @staticmethod
    def _disposition(call: Call, headers: list[tuple[str, str]],
                     info: ObjectInfo) -> list[tuple[str, str]]:
        kind = call.get("disposition-type")
        if kind is None:
            return headers
        if kind not in ("inline", "attachment"):
            raise errors.BadRequest("disposition-type must be inline or attachment.")
        headers = [(k, v) for k, v in headers if k != "Content-Disposition"]
        headers.append(("Content-Disposition", hdr.content_disposition(kind, info.name)))
        return headers

    def _hashmap_reply(self, call: Call, info: ObjectInfo, latest: float, fmt: str) -> Reply:
        etag = info.checksum or info.hash
        hdr.check_preconditions(call.request, etag, latest, reading=True)
        hashes = info.hashes or [EMPTY_HASH]
        headers = self._object_headers(info, call.user, etag, latest)
        return listings.hashmap(info, hashes, fmt, headers)

    async def _versions(self, call: Call, fmt: str) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        if fmt == "text":
            raise errors.BadRequest("version=list needs format=json or format=xml.")
        versions = await self.backend.versions(call.user, t.account, t.container, t.name)
        return listings.versions(t.name, versions, fmt)

    # -- objects: writing ------------------------------------------------------------

    def _content_type(self, call: Call) -> str:
        """The type of a new object: the request's, else guessed (see
        the module docstring)."""
        given = call.header("Content-Type")
        if given is not None and given.strip():
            value = given.strip()
            if len(value) > 256 or not value.isprintable():
                raise errors.BadRequest("Bad Content-Type header.")
            return value
        assert call.target.name is not None
        return mimetypes.guess_type(call.target.name)[0] or OCTET_STREAM

    def _object_meta(self, call: Call) -> dict[str, str]:
        meta = hdr.meta_headers(call.request, "Object", replacing=True) or {}
        meta.update(hdr.content_meta(call.request))
        return meta

    def _permissions(self, call: Call) -> tuple[Permissions | None, bool | None]:
        sharing = call.header("X-Object-Sharing")
        public = call.header("X-Object-Public")
        return (KEEP if sharing is None else hdr.parse_sharing(sharing),
                None if public is None else hdr.parse_public(public))

    async def object_put(self, call: Call) -> Reply:
        """Upload (streamed), hashmap upload, SLO manifest, or copy/move."""
        request = call.request
        try:
            call.user  # noqa: B018 -- 401 before anything else
            if call.header("X-Copy-From") is not None or \
                    call.header("X-Move-From") is not None:
                return await self._copy_by_put(call)
            if call.flag("hashmap"):
                return await self._put_hashmap(call)
            if call.get("multipart-manifest") == "put":
                return await self._put_slo(call)
            return await self._put_data(call)
        finally:
            await self.uploads.settle(request)

    async def _write_conditions(self, call: Call) -> tuple[int | None, bool]:
        """``(expect_serial, if_none_match)`` for a write: ``If-Match``
        needs the current object (412 if absent or different);
        ``If-None-Match`` takes only ``*`` (a list holding it counts as
        ``*``; anything else is Swift's 400)."""
        expect = await self._if_match_serial(call)
        if_none = call.header("If-None-Match")
        if if_none is not None and "*" not in [v.strip() for v in if_none.split(",")]:
            raise errors.BadRequest("If-None-Match only supports *")
        return expect, if_none is not None

    async def _if_match_serial(self, call: Call) -> int | None:
        """The serial of the current version ``If-Match`` names (its MD5 or
        its hashmap hash), which the write then expects to replace; None
        without the header; 412 when the object is absent or different."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        if_match = call.header("If-Match")
        if if_match is None:
            return None
        try:
            current = await self.backend.object(call.user, t.account, t.container, t.name)
        except errors.NotFound:
            raise errors.PreconditionFailed("The object does not exist.") from None
        if not hdr.etag_matches(if_match, current.checksum or current.hash) and \
                not hdr.etag_matches(if_match, current.hash):
            raise errors.PreconditionFailed("The object does not match If-Match.")
        return current.serial

    async def _put_data(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        if call.header("Content-Length") is None and \
                (call.header("Transfer-Encoding") or "").strip().lower() != "chunked":
            raise errors.LengthRequired("Missing Content-Length header.")
        content_type = self._content_type(call)
        meta = self._object_meta(call)
        permissions, public = self._permissions(call)
        expect, if_none = await self._write_conditions(call)
        given_etag = call.header("ETag")
        buffered = self.uploads.buffered_size(call.request)
        blocks = None  # a streamed body's gate placed it already
        if buffered is not None:
            blocks, _ = await self.uploads.check_upload(user, t, buffered, call.request)
        size, hashes, md5 = await self.uploads.stored(call.request, user, blocks)
        if size > swift.MAX_FILE_SIZE:
            raise errors.OverLimit(f"Objects are at most {swift.MAX_FILE_SIZE} bytes.")
        if given_etag is not None and given_etag.strip().strip('"').lower() != md5:
            raise errors.Unprocessable("The data does not match the ETag given.")
        info = await self.backend.put_object(
            user, t.account, t.container, t.name, size=size, hashes=hashes,
            content_type=content_type, checksum=md5, meta=meta, permissions=permissions,
            public=public, expect_serial=expect, if_none_match=if_none)
        self.uploads.committed(call.request)
        return self._created(info)

    def _created(self, info: ObjectInfo, code: int = 201) -> Reply:
        return Reply(code, [("ETag", info.checksum or info.hash),
                            ("X-Object-Version", str(info.serial)),
                            ("Last-Modified", hdr.http_date(info.mtime))])

    async def _put_hashmap(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        doc = await hashmap_doc(self.reactor, call.request, self.blocks.block_size)
        try:
            size, hashes = checked_hashmap(doc.get("bytes"), doc.get("hashes"),
                                           self.blocks.block_size)
        except HashmapError as e:
            raise errors.BadRequest(f"Bad hashmap: {e}") from None
        if size > swift.MAX_FILE_SIZE:
            raise errors.OverLimit(f"Objects are at most {swift.MAX_FILE_SIZE} bytes.")
        content_type = self._content_type(call)
        meta = self._object_meta(call)
        permissions, public = self._permissions(call)
        expect, if_none = await self._write_conditions(call)
        try:
            info = await self.backend.put_object(
                user, t.account, t.container, t.name, size=size, hashes=hashes,
                content_type=content_type, checksum="", meta=meta, permissions=permissions,
                public=public, expect_serial=expect, if_none_match=if_none, by_hash=True)
        except MissingBlocks as e:
            return json_reply(e.hashes, 409)
        if info.hashes is None:
            info = attrs.evolve(info, hashes=hashes)
        self.checksums.later(info)
        return self._created(info)

    async def _put_slo(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        body = small_body(call.request, swift.MAX_MANIFEST_SIZE)
        info = await swift.put_slo(self.backend, self.blocks, call.user, t.account,
                                   t.container, t.name, body, self._content_type(call),
                                   self._object_meta(call))
        return Reply(201, [("ETag", swift.slo_etag(info)),
                           ("X-Object-Version", str(info.serial)),
                           ("Last-Modified", hdr.http_date(info.mtime))])

    async def _copy_by_put(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        move = call.header("X-Move-From") is not None
        source = call.header("X-Move-From" if move else "X-Copy-From")
        assert source is not None
        container, name = hdr.split_object_path(source, "X-Move-From" if move
                                                else "X-Copy-From")
        # Swift names the source account X-Copy-From-Account, Pithos
        # X-Source-Account.
        given = call.header("X-Copy-From-Account")
        label = "X-Copy-From-Account"
        if given is None:
            given, label = call.header("X-Source-Account"), "X-Source-Account"
        account = hdr.unquoted(given or "", label).strip() or t.account
        return await self._copy(call, (account, container, name),
                                (t.account, t.container, t.name), move)

    async def object_copy(self, call: Call) -> Reply:
        return await self._copy_by_method(call, move=False)

    async def object_move(self, call: Call) -> Reply:
        return await self._copy_by_method(call, move=True)

    async def _copy_by_method(self, call: Call, move: bool) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        call.user  # noqa: B018
        destination = call.header("Destination")
        if not (destination or "").strip():
            raise errors.PreconditionFailed("Destination header required")
        assert destination is not None
        container, name = hdr.split_object_path(destination, "Destination")
        account = hdr.unquoted(call.header("Destination-Account") or "",
                               "Destination-Account").strip() or t.account
        return await self._copy(call, (t.account, t.container, t.name),
                                (account, container, name), move)

    async def _copy(self, call: Call, src: tuple[str, str, str], dst: tuple[str, str, str],
                    move: bool) -> Reply:
        if len(dst[1]) > MAX_CONTAINER_NAME or len(dst[2]) > MAX_OBJECT_NAME or \
                "\x00" in dst[2]:
            raise errors.BadRequest("The destination name is too long or holds NUL.")
        version = None
        if not move:
            given = call.header("X-Source-Version")
            if given is not None and given.strip():
                if not given.strip().isdigit():
                    raise errors.BadRequest("X-Source-Version must be a version id.")
                version = int(given.strip())
        content_type = None
        if call.header("Content-Type") and not call.flag("ignore_content_type"):
            content_type = self._content_type(call)
        meta = self._object_meta(call)
        permissions, public = self._permissions(call)
        fresh = (call.header("X-Fresh-Metadata") or "").strip().lower() in TRUE
        try:  # for X-Copied-From-Last-Modified (a directory copy has no source object)
            source: ObjectInfo | None = await self.backend.object(call.user, *src, version)
        except errors.NotFound:
            source = None
        source_mtime = source.mtime if source is not None else None
        ranges = None
        if source is not None and not move:
            # As Swift's copy middleware: the conditions and the range are
            # the source's (a GET of it).
            parts, size, etag = await downloads.content(
                self.backend, self.blocks, call.user, source, False,
                call.header("Range") is not None)
            hdr.check_preconditions(call.request, etag, source.mtime, reading=True)
            if hdr.if_range_holds(call.request, etag, source.mtime):
                ranges = hdr.parse_ranges(call.header("Range"), size)
        if ranges is not None:
            assert source is not None
            info = await self._ranged_copy(call, source, parts, ranges, dst, content_type,
                                           meta, fresh, permissions, public)
        else:
            info = await self.backend.copy_object(
                call.user, *src, *dst, move=move, version=version,
                content_type=content_type, meta=meta, replace_meta=fresh,
                permissions=permissions, public=public,
                delimiter=call.text_param("delimiter") or None)
        reply = self._created(info)
        reply.headers += [("X-Copied-From", quote(f"{src[1]}/{src[2]}")),
                          ("X-Copied-From-Account", quote(src[0]))]
        # As Swift: the copy's metadata come back with it.
        reply.headers += [(k, v) for k, v in sorted(info.meta.items())
                          if k.startswith("X-Object-Meta-")]
        if source_mtime is not None:
            reply.headers.append(("X-Copied-From-Last-Modified",
                                  hdr.http_date(source_mtime)))
        return reply

    async def _ranged_copy(self, call: Call, source: ObjectInfo,
                           parts: list[downloads.Part], ranges: list[tuple[int, int]],
                           dst: tuple[str, str, str], content_type: str | None,
                           meta: dict[str, str], fresh: bool,
                           permissions: Permissions | None, public: bool | None) -> ObjectInfo:
        """A copy with a ``Range``: the range's bytes become a new object
        (Swift's copy middleware PUTs what the ranged GET of the source
        answered), with the source's type and metadata unless given.
        Several ranges would copy a ``multipart/byteranges`` body: 400."""
        if len(ranges) != 1:
            raise errors.BadRequest("A copy takes a single range.")
        start, end = ranges[0]
        target = Target(*dst)
        blocks = await self.uploads.check_writer(call.user, target, "object")
        await self.uploads.check_room(target, end - start)
        bs = self.blocks.block_size
        md5 = hashlib.md5(usedforsecurity=False)
        hashes: list[str] = []
        pending = bytearray()

        async def flush(final: bool) -> None:
            while len(pending) >= bs or (final and pending):
                block = bytes(pending[:bs])
                del pending[:bs]
                md5.update(block)
                hashes.extend(await blocks.put([block]))

        offset = 0
        for part in parts:
            lo, hi = max(start, offset), min(end, offset + part.size)
            pos = lo
            while pos < hi:
                step = min(hi, (pos // part.block_size + 1) * part.block_size)
                pending += await read_range(self.blocks, part.hashes, part.size,
                                            pos - offset, step - offset, part.block_size)
                pos = step
                await flush(False)
            offset += part.size
        await flush(True)
        kept = {} if fresh else {k: v for k, v in source.meta.items()
                                 if k.startswith("X-Object-Meta-")
                                 or k in ("Content-Encoding", "Content-Disposition")}
        info: ObjectInfo = await self.backend.put_object(
            call.user, *dst, size=end - start, hashes=hashes or [EMPTY_HASH],
            content_type=content_type or source.type, checksum=md5.hexdigest(),
            meta={**kept, **meta}, permissions=permissions, public=public)
        return info

    async def object_post(self, call: Call) -> Reply:
        """Metadata/permissions; data updates; HTML form uploads."""
        try:
            return await self._object_post(call)
        finally:
            await self.uploads.settle(call.request)

    async def _object_post(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        request = call.request
        media = media_type(call.header("Content-Type"))
        if media == "multipart/form-data":
            return await self._form_upload(call)
        source = call.header("X-Source-Object")
        user_meta = hdr.meta_headers(request, "Object", replacing=not call.flag("update"))
        content = hdr.content_meta(request)
        meta = {**(user_meta or {}), **content}
        meta_given = user_meta is not None or bool(content)
        permissions, public = self._permissions(call)
        replace = not call.flag("update")
        empty = (call.header("Content-Range") is None
                 and (call.header("Content-Length") or "").strip() == "0")
        if (media != OCTET_STREAM or empty) and source is None:
            # The backend keeps stored keys other than user meta and content
            # headers (the SLO helper meta) when replacing.
            # As Swift: a Content-Type given with the POST is the new type.
            new_type = self._content_type(call) if (call.header("Content-Type") or
                                                    "").strip() else None
            await self.backend.update_object(user, t.account, t.container, t.name,
                                             meta, replace, permissions, public,
                                             content_type=new_type)
            return Reply(202)
        if meta_given or permissions is not KEEP or public is not None:
            await self.backend.update_object(user, t.account, t.container, t.name,
                                             meta if meta_given else None, replace,
                                             permissions, public)
        src = None
        if source is not None:
            container, name = hdr.split_object_path(source, "X-Source-Object")
            account = hdr.unquoted(call.header("X-Source-Account") or "",
                                   "X-Source-Account").strip() or t.account
            given = (call.header("X-Source-Version") or "").strip()
            if given and not given.isdigit():
                raise errors.BadRequest("X-Source-Version must be a version id.")
            src = (account, container, name, int(given) if given else None)
        object_bytes = None
        given_bytes = call.header("X-Object-Bytes")
        if given_bytes is not None:
            if not given_bytes.strip().isdigit():
                raise errors.BadRequest("X-Object-Bytes must be a non-negative integer.")
            object_bytes = int(given_bytes.strip())
        length = call.header("Content-Length")
        data = None
        if source is None:
            # The body streamed into blocks (``Uploads.body_sink``), or a
            # small one buffered: never read whole into memory.
            size, hashes, _ = await self.uploads.stored(request, user)
            data = updates.StoredBody(size, hashes)
        info = await updates.partial_update(
            self.backend, self.blocks, user, t.account, t.container, t.name,
            content_range=call.header("Content-Range"), data=data, source=src,
            object_bytes=object_bytes,
            content_length=int(length) if length and length.strip().isdigit() else None,
            content_type=call.header("Content-Type"),
            chunked=call.header("Transfer-Encoding") is not None)
        self.uploads.committed(request)
        self.checksums.later(info)
        return self._created(info, 204)

    async def _form_upload(self, call: Call) -> Reply:
        """An HTML form's ``X-Object-Data`` file becomes the object."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        blocks, _ = await self.uploads.check_upload(
            call.user, t, self.uploads.buffered_size(call.request))
        size, hashes, md5, content_type = await self.uploads.form_file(
            call.request, call.header("Content-Type"), t.name, call.user, blocks)
        info = await self.backend.put_object(
            call.user, t.account, t.container, t.name, size=size, hashes=hashes,
            content_type=content_type, checksum=md5, meta={})
        self.uploads.committed(call.request)
        reply = self._created(info)
        reply.body, reply.content_type = md5.encode("ascii"), TEXT
        return reply

    async def object_delete(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        until, delimiter = call.epoch(), call.text_param("delimiter") or None
        manifest = call.get("multipart-manifest") == "delete"
        if call.header("If-Match") is not None and (until is not None or delimiter or manifest):
            raise errors.BadRequest("If-Match applies to the deletion of one object only"
                                    " (not with until, delimiter or multipart-manifest).")
        if manifest:
            info = await self.backend.object(user, t.account, t.container, t.name)
            if swift.is_slo(info):
                summary = await swift.delete_slo(self.backend, self.blocks, user, t.account,
                                                 t.container, t.name)
                return listings.bulk_summary(summary, call.fmt())
        expect = await self._if_match_serial(call)
        await self.backend.delete_object(user, t.account, t.container, t.name,
                                         until=until, delimiter=delimiter,
                                         expect_serial=expect)
        return Reply(204)

    # -- public links ----------------------------------------------------------------

    async def public_get(self, request: Any) -> Reply:
        """``GET``/``HEAD /public/<token>``: no token, ranges, and only
        the headers the reference lists."""
        if request.method not in (b"GET", b"HEAD"):
            raise errors.MethodNotAllowed("Public links are read with GET.",
                                          headers={"Allow": "GET, HEAD"})
        segments = list(request.postpath)
        token = segments[0].decode("ascii", "replace") if len(segments) == 1 else ""
        if not _TOKEN.match(token):
            raise errors.NotFound("No such public link.")
        info = await self.backend.public_object(token)
        call = Call(request, request.method.decode("ascii"), Target(
            info.account, info.container, info.name), query_args(request))
        # A large object's segments are read as the link's caller: anonymous.
        parts, size, etag = await downloads.content(self.backend, self.blocks, ANONYMOUS,
                                                    info, False, request.method == b"GET")
        hdr.check_preconditions(request, etag, info.mtime, reading=True)
        headers = [("ETag", etag), ("Last-Modified", hdr.http_date(info.mtime))]
        for key in ("Content-Encoding", "Content-Disposition"):
            if info.meta.get(key):
                headers.append((key, info.meta[key]))
        headers = self._disposition(call, headers, info)
        return downloads.body_reply(self.blocks, call, headers, parts, size, info.type, etag,
                                    info.mtime)


#: Swift's middleware features, outermost first: each makes its ``Filter``
#: from the API (see ``snfd.pithos.middleware``).
FILTERS: list[Callable[[PithosAPI], Filter]] = [
    cors.CORS.from_api, TempURL.from_api, FormPost.from_api, staticweb.StaticWeb.from_api,
    bulk.Bulk.from_api, expiry.Expiry.from_api, swift_quotas.Quotas.from_api,
    versioning.VersionedWrites.from_api, ObjectVersioning.from_api,
    symlinks.Symlinks.from_api]

_ROUTES: dict[str, dict[str, Callable[[PithosAPI, Call], Awaitable[Reply]]]] = {
    "top": {"GET": PithosAPI.top_get, "HEAD": PithosAPI.top_get},
    "account": {"HEAD": PithosAPI.account_head, "GET": PithosAPI.account_get,
                "POST": PithosAPI.account_post, "DELETE": PithosAPI.account_delete},
    "container": {"HEAD": PithosAPI.container_head, "GET": PithosAPI.container_get,
                  "PUT": PithosAPI.container_put, "POST": PithosAPI.container_post,
                  "DELETE": PithosAPI.container_delete},
    "object": {"HEAD": PithosAPI.object_get, "GET": PithosAPI.object_get,
               "PUT": PithosAPI.object_put, "POST": PithosAPI.object_post,
               "DELETE": PithosAPI.object_delete, "COPY": PithosAPI.object_copy,
               "MOVE": PithosAPI.object_move},
}


class _ObjectStore(Resource):
    """The ``/object-store`` leaf: every path below it is routed by
    ``PithosAPI.handle``."""

    isLeaf = True

    def __init__(self, api: PithosAPI):
        super().__init__()
        self._api = api
        self.body_sink = api.body_sink
        self.body_limit = api.body_limit

    def render(self, request: Any) -> Any:
        d = defer.ensureDeferred(respond(request, self._api.handle))
        # A failure while answering (a header Twisted refuses) is a logged
        # 500 or a dropped connection, never a request left hanging.
        d.addErrback(request.processingFailed)
        return server.NOT_DONE_YET


class _Public(Resource):
    """The ``/public`` leaf: public links."""

    isLeaf = True

    def __init__(self, api: PithosAPI):
        super().__init__()
        self._api = api

    fault_style = staticmethod(swift_style)

    def render(self, request: Any) -> Any:
        d = defer.ensureDeferred(respond(request, self._api.public_get))
        d.addErrback(request.processingFailed)
        return server.NOT_DONE_YET


__all__ = ["PithosAPI"]
