"""Swift's symlinks (its ``symlink`` middleware): objects that stand for
another object.

A symlink is made by a zero-byte ``PUT`` with ``X-Symlink-Target:
<container>/<object>`` (percent-encoded) and, for another account,
``X-Symlink-Target-Account``.  A body is a 400 (``Symlink requests
require a zero byte body``), a target not of that form a 412, the link
itself as target a 400; the target need not exist.  ``Content-Type`` is
the request's, else guessed from the name (Swift suggests
``application/symlink``).  A *static* link also gives
``X-Symlink-Target-Etag`` (and may give ``X-Symlink-Target-Bytes``): the
target must then exist with that ETag (and size), else 409, its type is
the default, and a ``GET`` through the link answers 409 once the target
has changed.

``GET``/``HEAD`` of a symlink answer its target (the data, headers and
status a request for the target would get) with ``Content-Location:
/v1/<account>/<container>/<object>``.  The target is read with the
caller's own rights, never the link owner's: a link grants nothing.
Chains are followed up to ``SYMLOOP_MAX`` links; a longer chain or a loop
is a 409.  ``?symlink=get`` answers the link itself, with
``X-Symlink-Target``, ``X-Symlink-Target-Account`` and, for a static
link, ``X-Symlink-Target-Etag`` and ``X-Symlink-Target-Bytes``.  A copy
(``COPY``, ``PUT`` with ``X-Copy-From``) of a link copies its target
(``?symlink=get``: the link); a ``POST`` to a link changes the link's
metadata and answers 307 with the target as ``Location``; a ``POST``
with ``X-Symlink-Target`` is a 400; ``DELETE`` removes the link.  A JSON
or XML container listing shows each link with ``symlink_path`` (and
``symlink_etag``, ``symlink_bytes`` for static links).

Stored as Swift stores it: the link is an empty object whose checksum
(its ETag space, which listings carry and only a new ``PUT`` changes)
is the MD5 of nothing followed by the target as parameters,
``d41d8cd98f00b204e9800998ecf8427e; symlink_target=<c/o>;
symlink_target_account=<a>[; symlink_target_etag=<e>;
symlink_target_bytes=<n>]`` (values percent-encoded).  This filter
shows clients the plain ETag.  Where Pithos differs: a public link
(``X-Object-Public``) to a symlink serves the empty link, not its target.
"""

from __future__ import annotations

import json
import mimetypes
import re
from typing import Any
from urllib.parse import quote, unquote

import attrs

from snfd import errors
from snfd.pithos import headers as hdr
from snfd.pithos import swift
from snfd.pithos.hashmap import EMPTY_HASH
from snfd.pithos.listings import TEXT
from snfd.pithos.middleware import Handler
from snfd.pithos.model import ObjectInfo
from snfd.pithos.requests import OCTET_STREAM, Call, Reply, Target
from snfd.pithos.rules import MAX_ACCOUNT_NAME, MAX_CONTAINER_NAME, MAX_OBJECT_NAME
from snfd.pithos.uploads import streamed

SYMLOOP_MAX = 2
"""Links followed for one request (Swift's default ``symloop_max``)."""

MD5_EMPTY = "d41d8cd98f00b204e9800998ecf8427e"
"""A symlink's ETag: the MD5 of its empty body."""

_FORM = "X-Symlink-Target header must be of the form <container name>/<object name>"
_MARK = "symlink_target="
_XML_HASH = re.compile(r"<hash>([^<;]*); (symlink_target=[^<]*)</hash>")


@attrs.frozen
class Link:
    """Where a symlink points (names decoded); ``etag`` and ``size`` for
    a static link."""

    account: str
    container: str
    name: str
    etag: str | None = None
    size: int | None = None

    @property
    def target(self) -> str:
        """``X-Symlink-Target`` as answered: ``<container>/<object>``,
        percent-encoded."""
        return quote(f"{self.container}/{self.name}", safe="/")

    @property
    def location(self) -> str:
        """The target's path as Swift writes it (``Content-Location``,
        ``symlink_path``)."""
        return f"/v1/{quote(self.account, safe='')}/{self.target}"

    def checksum(self) -> str:
        """The stored checksum of a link to here (see the module docstring)."""
        parts = [MD5_EMPTY, f"{_MARK}{self.target}",
                 f"symlink_target_account={quote(self.account, safe='')}"]
        if self.etag is not None:
            parts += [f"symlink_target_etag={quote(self.etag, safe='')}",
                      f"symlink_target_bytes={self.size or 0}"]
        return "; ".join(parts)


def link_of(etag: str | None) -> Link | None:
    """The ``Link`` a stored checksum (or an ETag answered for it) holds,
    ``None`` for any other object."""
    if not etag or _MARK not in etag:
        return None
    params: dict[str, str] = {}
    for part in etag.strip('"').split(";")[1:]:
        key, _, value = part.strip().partition("=")
        params[key] = unquote(value)
    container, _, name = params.get("symlink_target", "").partition("/")
    account = params.get("symlink_target_account", "")
    if not container or not name or not account:
        return None
    size = params.get("symlink_target_bytes", "")
    return Link(account, container, name, params.get("symlink_target_etag") or None,
                int(size) if size.isdigit() else None)


def _etag(reply: Reply) -> str | None:
    for name, value in reply.headers:
        if name.lower() == "etag":
            return value
    return None


def _plain_etag(reply: Reply) -> Link | None:
    """Show a link's ETag as clients know it; the link, if it is one."""
    link = link_of(_etag(reply))
    if link is not None:
        reply.headers = [(n, MD5_EMPTY if n.lower() == "etag" else v)
                         for n, v in reply.headers]
    return link


class Symlinks:
    """The filter: see the module docstring.

    @param backend: the ``Backend``.
    @param uploads: the API's ``Uploads`` (``check_room`` and
        ``check_writer`` before a link is stored; streamed bodies).
    """

    def __init__(self, backend: Any, uploads: Any):
        self.backend = backend
        self.uploads = uploads

    @classmethod
    def from_api(cls, api: Any) -> Symlinks:
        return cls(api.backend, api.uploads)

    def info(self) -> dict[str, Any]:
        return {"symlink": {"symloop_max": SYMLOOP_MAX, "static_links": True}}

    async def __call__(self, call: Call, app: Handler) -> Reply:
        level, method = call.target.level, call.method
        if level == "container" and method == "GET":
            return self._listing(await app(call))
        if level != "object":
            return await app(call)
        if method == "PUT" and call.header("X-Symlink-Target") is not None:
            return await self._put(call)
        if method in ("GET", "HEAD"):
            if call.get("symlink") == "get":
                reply = await app(call)
                link = _plain_etag(reply)
                if link is not None:
                    reply.headers += self._link_headers(link)
                return reply
            return await self._follow(call, app)
        if method == "POST":
            if call.header("X-Symlink-Target") is not None:
                raise errors.BadRequest("A PUT request is required to set a symlink target")
            return await self._post(call, app)
        if call.get("symlink") != "get" and (method == "COPY" or (
                method == "PUT" and call.header("X-Copy-From") is not None)):
            call = await self._copy_source(call)
        reply = await app(call)
        _plain_etag(reply)
        return reply

    @staticmethod
    def _link_headers(link: Link) -> list[tuple[str, str]]:
        out = [("X-Symlink-Target", link.target),
               ("X-Symlink-Target-Account", quote(link.account, safe=""))]
        if link.etag is not None:
            out += [("X-Symlink-Target-Etag", link.etag),
                    ("X-Symlink-Target-Bytes", str(link.size or 0))]
        return out

    # -- reading through a link ------------------------------------------------------

    async def _follow(self, call: Call, app: Handler) -> Reply:
        current, hops = call, 0
        followed: Link | None = None
        while True:
            try:
                reply, link = await self._fetch(current, app)
            except errors.Fault as e:
                if followed is not None:
                    e.headers.setdefault("Content-Location", followed.location)
                raise
            if followed is not None and followed.etag is not None:
                found = (MD5_EMPTY if link is not None
                         else (_etag(reply) if reply is not None else "") or "").strip('"')
                if found != followed.etag:
                    raise errors.Conflict(
                        f'Object Etag "{found}" does not match X-Symlink-Target-Etag'
                        f' header "{followed.etag}"',
                        headers={"Content-Location": followed.location})
            if link is None:
                assert reply is not None
                if followed is not None:
                    reply.headers.append(("Content-Location", followed.location))
                return reply
            if hops >= SYMLOOP_MAX:
                raise errors.Conflict("Too many levels of symbolic links, maximum allowed"
                                      f" is {SYMLOOP_MAX}")
            hops += 1
            followed = link
            args = {k: v for k, v in current.args.items() if k != "version"}
            current = Call(call.request, call.method,
                           Target(link.account, link.container, link.name), args)

    async def _fetch(self, call: Call, app: Handler) -> tuple[Reply | None, Link | None]:
        """The reply for ``call`` and the link it met, if any.  A
        precondition or range the link itself cannot meet (304, 412,
        416) is the target's to decide: the object is looked at then."""
        try:
            reply = await app(call)
        except errors.Fault as e:
            if e.code not in (304, 412, 416):
                raise
            info = await self._lookup(call.user, call.target)
            link = link_of(info.checksum) if info is not None else None
            if link is None:
                raise
            return None, link
        return reply, link_of(_etag(reply))

    async def _lookup(self, user: str, t: Target) -> ObjectInfo | None:
        assert t.account is not None and t.container is not None and t.name is not None
        try:
            info: ObjectInfo = await self.backend.object(user, t.account, t.container, t.name)
        except errors.Fault:
            return None
        return info

    # -- writing ---------------------------------------------------------------------

    async def _put(self, call: Call) -> Reply:
        request = call.request
        try:
            return await self._put_link(call)
        finally:
            await self.uploads.settle(request)

    async def _put_link(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        if streamed(call.request) or self.uploads.buffered_size(call.request):
            raise errors.BadRequest("Symlink requests require a zero byte body")
        link = self._requested(call)
        content_type = (call.header("Content-Type") or "").strip()
        if link.etag is not None:
            link, target_type = await self._static(call, link)
            content_type = content_type or target_type
        if len(content_type) > 256 or not content_type.isprintable():
            raise errors.BadRequest("Bad Content-Type header.")
        content_type = content_type or mimetypes.guess_type(t.name)[0] or OCTET_STREAM
        meta = hdr.meta_headers(call.request, "Object") or {}
        meta.update(hdr.content_meta(call.request))
        await self.uploads.check_writer(user, t, "object")
        await self.uploads.check_room(t, 0)
        info = await self.backend.put_object(
            user, t.account, t.container, t.name, size=0, hashes=[EMPTY_HASH],
            content_type=content_type, checksum=link.checksum(), meta=meta)
        return Reply(201, [("ETag", MD5_EMPTY), ("X-Object-Version", str(info.serial)),
                           ("Last-Modified", hdr.http_date(info.mtime))])

    @staticmethod
    def _requested(call: Call) -> Link:
        """The link a ``PUT`` asks for (412/400 for a bad one)."""
        t = call.target
        raw = call.header("X-Symlink-Target") or ""
        value = hdr.unquoted(raw.strip(), "X-Symlink-Target")
        container, slash, name = value.partition("/")
        if value.startswith("/") or not container or not slash or not name or \
                "\x00" in value or len(container) > MAX_CONTAINER_NAME or \
                len(name) > MAX_OBJECT_NAME:
            raise errors.PreconditionFailed(_FORM)
        account = t.account
        given = call.header("X-Symlink-Target-Account")
        if given is not None:
            account = hdr.unquoted(given.strip(), "X-Symlink-Target-Account")
            if not account or "/" in account or "\x00" in account or \
                    len(account) > MAX_ACCOUNT_NAME:
                raise errors.PreconditionFailed(
                    "X-Symlink-Target-Account must be an account name")
        assert account is not None
        if (account, container, name) == (t.account, t.container, t.name):
            raise errors.BadRequest("Symlink cannot target itself")
        etag = call.header("X-Symlink-Target-Etag")
        size = call.header("X-Symlink-Target-Bytes")
        if size is not None and not size.strip().isdigit():
            raise errors.BadRequest("X-Symlink-Target-Bytes must be a non-negative integer")
        if etag is None:
            return Link(account, container, name)
        return Link(account, container, name, etag.strip().strip('"'),
                    int(size) if size is not None else None)

    async def _static(self, call: Call, link: Link) -> tuple[Link, str]:
        """A static link checked against its target, read as the caller
        (409 unless it exists with that ETag and size); with the target's
        size and type."""
        info = await self._lookup(call.user, Target(link.account, link.container, link.name))
        if info is None:
            raise errors.Conflict("X-Symlink-Target does not exist",
                                  headers={"Content-Location": link.location})
        further = link_of(info.checksum)
        if further is not None and further.etag is not None:
            etag, size = further.etag, further.size or 0
        elif swift.is_slo(info):
            etag, size = swift.slo_etag(info).strip('"'), swift.slo_size(info)
        else:
            etag, size = (MD5_EMPTY if further else info.checksum or info.hash), info.size
        if etag != link.etag:
            raise errors.Conflict(
                f'Object Etag "{etag}" does not match X-Symlink-Target-Etag header'
                f' "{link.etag}"', headers={"Content-Location": link.location})
        if link.size is not None and link.size != size:
            raise errors.Conflict(
                f'Object size "{size}" does not match X-Symlink-Target-Bytes header'
                f' "{link.size}"', headers={"Content-Location": link.location})
        return attrs.evolve(link, size=size), info.type

    async def _post(self, call: Call, app: Handler) -> Reply:
        reply = await app(call)
        if reply.code >= 300 or call.anonymous:
            return reply
        info = await self._lookup(call.user, call.target)
        link = link_of(info.checksum) if info is not None else None
        if link is None:
            return reply
        return Reply(307, [("Location", link.location)],
                     b"The requested POST was applied to a symlink. POST directly to"
                     b" the target to apply requested metadata.", TEXT)

    async def _copy_source(self, call: Call) -> Call:
        """``call`` copying the object a link stands for instead of the
        link (chains followed as a read follows them)."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        if call.anonymous:
            return call
        if call.method == "COPY":
            source = t
        else:
            try:
                container, name = hdr.split_object_path(call.header("X-Copy-From") or "",
                                                        "X-Copy-From")
            except errors.Fault:
                return call  # the handler answers it
            given = call.header("X-Copy-From-Account") or call.header("X-Source-Account")
            account = hdr.unquoted(given or "", "X-Source-Account").strip() or t.account
            source = Target(account, container, name)
        info = await self._lookup(call.user, source)
        link = link_of(info.checksum) if info is not None else None
        if link is None:
            return call
        hops = 0
        while link is not None:
            if hops >= SYMLOOP_MAX:
                raise errors.Conflict("Too many levels of symbolic links, maximum allowed"
                                      f" is {SYMLOOP_MAX}")
            hops += 1
            source = Target(link.account, link.container, link.name)
            info = await self._lookup(call.user, source)
            if info is None:
                raise errors.NotFound("The symlink's target does not exist.",
                                      headers={"Content-Location": link.location})
            link = link_of(info.checksum)
        heads = call.request.requestHeaders
        if call.method == "COPY":
            if call.header("Destination-Account") is None:
                heads.setRawHeaders(b"destination-account",
                                    [quote(t.account, safe="").encode("ascii")])
            return Call(call.request, call.method, source, call.args)
        assert source.account is not None
        heads.setRawHeaders(b"x-copy-from",
                            [quote(f"/{source.container}/{source.name}").encode("ascii")])
        for header in (b"x-source-account", b"x-copy-from-account"):
            if header == b"x-source-account" or heads.hasHeader(header):
                heads.setRawHeaders(header, [quote(source.account, safe="").encode("ascii")])
        return call

    # -- listings --------------------------------------------------------------------

    @staticmethod
    def _listing(reply: Reply) -> Reply:
        """A container listing showing links as Swift does."""
        if _MARK.encode() not in reply.body or reply.stream is not None:
            return reply
        kind = (reply.content_type or "").split(";")[0].strip()
        if kind == "application/json":
            entries = json.loads(reply.body)
            for entry in entries:
                link = link_of(entry.get("hash")) if isinstance(entry, dict) else None
                if link is None:
                    continue
                entry["hash"] = MD5_EMPTY
                entry["symlink_path"] = link.location
                if link.etag is not None:
                    entry["symlink_etag"] = link.etag
                    entry["symlink_bytes"] = link.size or 0
            reply.body = json.dumps(entries).encode("utf-8")
        elif kind == "application/xml":
            def shown(m: re.Match[str]) -> str:
                link = link_of(f"{m.group(1)}; {m.group(2)}")
                if link is None:
                    return m.group(0)
                out = f"<hash>{MD5_EMPTY}</hash><symlink_path>{link.location}</symlink_path>"
                if link.etag is not None:
                    out += (f"<symlink_etag>{link.etag}</symlink_etag>"
                            f"<symlink_bytes>{link.size or 0}</symlink_bytes>")
                return out
            reply.body = _XML_HASH.sub(shown, reply.body.decode("utf-8")).encode("utf-8")
        return reply


__all__ = ["MD5_EMPTY", "SYMLOOP_MAX", "Link", "Symlinks", "link_of"]
