"""Swift's bulk archive extraction (the ``extract-archive`` half of its
``bulk`` middleware; bulk delete is ``snfd.pithos.swift.bulk_delete``).

``PUT /v1/<account>[/<container>[/<prefix>]]?extract-archive=tar|tar.gz|tar.bz2``
with a tar archive as body makes an object of each regular file in it
(directories, links and devices are skipped): at the account level the
first component of a file's path names its container (made when
missing), below it the path is appended to the container (and prefix)
of the request.  A leading ``./`` or ``/`` is dropped.  An
``extract-archive`` Swift does not know is a 400 ``Unsupported archive
format``.

The answer is always 200, its body Swift's summary (text, JSON or XML as
``?format``/``Accept`` ask, as for bulk delete): ``Number Files Created``,
``Response Status`` (``201 Created``, or ``400 Bad Request`` when a file
failed, the archive is not one, or it holds no file; ``502 Bad Gateway``,
as Swift, when a file failed for the server's own reason, a 5xx such as
a full block store's 507), ``Response Body`` and ``Errors``, one
``[quoted path, status]`` per file that failed (a bad name 412, too
large or over a quota 413, no permission 403, no room 507, ...).  An
extraction stops after ``MAX_FAILED_EXTRACTIONS`` failures, and at the
first container beyond ``MAX_CONTAINERS_PER_EXTRACTION`` new ones.

Every file is stored as an object ``PUT`` stores it: checked like one
(``Uploads.check_upload``: write permission, the uploader's bound, Pithos and Swift
quotas) before its blocks are stored, with its MD5, its type from the
archive (``SCHILY.xattr.user.mime_type``) or guessed from its name, and
its ``SCHILY.xattr.user.meta.*`` pax headers as ``X-Object-Meta-*``.
The archive is buffered on disk by the web layer (up to
``swift.MAX_FILE_SIZE``), then read as a stream, one block at a time;
reading and decompressing run in the reactor's thread pool.
"""

from __future__ import annotations

import hashlib
import http
import mimetypes
import tarfile
import zlib
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from twisted.internet.threads import deferToThreadPool

from snfd import errors
from snfd.pithos import headers as hdr
from snfd.pithos import listings, swift
from snfd.pithos.hashmap import EMPTY_HASH
from snfd.pithos.middleware import Handler
from snfd.pithos.requests import OCTET_STREAM, Call, Reply, Target
from snfd.pithos.rules import MAX_CONTAINER_NAME, MAX_OBJECT_NAME
from snfd.pithos.uploads import streamed

MAX_CONTAINERS_PER_EXTRACTION = 10000
MAX_FAILED_EXTRACTIONS = 1000
COMPRESSIONS = {"tar": "", "tar.gz": "gz", "tar.bz2": "bz2"}
"""``extract-archive`` values and the ``tarfile`` compression each reads."""

_BROKEN = (tarfile.TarError, EOFError, OSError, zlib.error)
_XATTR = "SCHILY.xattr."
T = TypeVar("T")


def _status(code: int) -> str:
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


class _Stop(Exception):
    """The extraction ends here with this ``Response Body``."""


class Bulk:
    """The filter: see the module docstring.

    @param backend: the ``Backend``.
    @param blocks: the ``IBlockStore``.
    @param reactor: the reactor (its thread pool reads the archive).
    @param uploads: the API's ``Uploads`` (the checks an upload passes).
    """

    def __init__(self, backend: Any, blocks: Any, reactor: Any, uploads: Any):
        self.backend = backend
        self.blocks = blocks
        self.reactor = reactor
        self.uploads = uploads

    @classmethod
    def from_api(cls, api: Any) -> Bulk:
        return cls(api.backend, api.blocks, api.reactor, api.uploads)

    def info(self) -> dict[str, Any]:
        return {"bulk_upload": {
            "max_containers_per_extraction": MAX_CONTAINERS_PER_EXTRACTION,
            "max_failed_extractions": MAX_FAILED_EXTRACTIONS}}

    async def __call__(self, call: Call, app: Handler) -> Reply:
        if call.method != "PUT" or not call.has("extract-archive") or \
                call.target.level == "top":
            return await app(call)
        try:
            return await self._extract(call)
        finally:
            await self.uploads.settle(call.request)

    async def _extract(self, call: Call) -> Reply:
        call.user  # noqa: B018 -- 401 before anything else
        kind = (call.get("extract-archive") or "").strip().strip(".").lower()
        compression = COMPRESSIONS.get(kind)
        if compression is None:
            raise errors.BadRequest("Unsupported archive format")
        if streamed(call.request):
            raise errors.BadRequest("The archive could not be read.")
        extraction = _Extraction(self, call)
        try:
            await extraction.run(compression)
        except _Stop as e:
            extraction.fail(str(e))
        except _BROKEN as e:
            extraction.fail(f"Invalid Tar File: {e}")
        return extraction.reply()

    async def in_thread(self, f: Callable[..., T], *args: Any) -> T:
        result: T = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f,
                                            *args)
        return result


class _Extraction:
    """One archive being extracted for one request."""

    def __init__(self, bulk: Bulk, call: Call):
        self.bulk = bulk
        self.call = call
        self.user = call.user
        t = call.target
        assert t.account is not None
        self.account = t.account
        self.base = "/".join(p for p in (t.container, t.name) if p)
        self.created = 0
        self.errors: list[list[str]] = []
        self.body = ""
        self.status: str | None = None
        self.known: set[str] = set()
        self.new_containers = 0
        # A file failed with a 5xx: Swift's summary is then a 502.
        self.server_failed = False

    def fail(self, body: str) -> None:
        self.status, self.body = _status(400), body

    def reply(self) -> Reply:
        status = self.status
        if status is None:
            if self.errors:
                status = _status(502 if self.server_failed else 400)
            elif not self.created:
                status, self.body = _status(400), "Invalid Tar File: No Valid Files"
            else:
                status = _status(201)
        summary = {"Number Files Created": self.created, "Response Body": self.body,
                   "Response Status": status, "Errors": self.errors}
        return listings.bulk_summary(summary, self.call.fmt(), root="extract")

    async def run(self, compression: str) -> None:
        content = self.call.request.content
        await self.bulk.in_thread(content.seek, 0)
        tar = await self.bulk.in_thread(tarfile.open, None, f"r|{compression}", content)
        try:
            while True:
                member = await self.bulk.in_thread(tar.next)
                if member is None:
                    return
                if member.isfile():
                    await self._file(tar, member)
                if len(self.errors) >= MAX_FAILED_EXTRACTIONS:
                    raise _Stop("Max failed extractions exceeded")
        finally:
            await self.bulk.in_thread(tar.close)

    async def _file(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        path = member.name
        while path.startswith("./"):
            path = path[2:]
        path = path.lstrip("/")
        full = f"{self.base}/{path}" if self.base else path
        try:
            full.encode("utf-8")
        except UnicodeEncodeError:
            self.errors.append([quote(full, errors="surrogateescape"), _status(412)])
            return
        container, _, name = full.partition("/")
        if not container or not name:
            self.errors.append([quote(full), _status(400)])
            return
        if "\x00" in full or len(container) > MAX_CONTAINER_NAME or \
                len(name) > MAX_OBJECT_NAME:
            self.errors.append([quote(full), _status(412)])
            return
        if member.size > swift.MAX_FILE_SIZE:
            self.errors.append([quote(full), _status(413)])
            return
        try:
            await self._container(container)
            await self._store(tar, member, Target(self.account, container, name))
        except errors.Fault as e:
            self.errors.append([quote(full), _status(e.code)])
            self.server_failed = self.server_failed or e.code >= 500
        else:
            self.created += 1

    async def _container(self, container: str) -> None:
        if container in self.known:
            return
        backend = self.bulk.backend
        try:
            await backend.container(self.user, self.account, container)
        except errors.NotFound:
            if self.new_containers >= MAX_CONTAINERS_PER_EXTRACTION:
                raise _Stop(f"More than {MAX_CONTAINERS_PER_EXTRACTION} containers to"
                            " create from tar.") from None
            await backend.put_container(self.user, self.account, container, {}, {})
            self.new_containers += 1
        self.known.add(container)

    async def _store(self, tar: tarfile.TarFile, member: tarfile.TarInfo,
                     target: Target) -> None:
        assert target.container is not None and target.name is not None
        bulk = self.bulk
        # The blocks go to the store of the container's storage policy.
        store, _ = await bulk.uploads.check_upload(self.user, target, member.size)
        store = store or bulk.blocks
        content_type = mimetypes.guess_type(target.name)[0] or OCTET_STREAM
        meta: dict[str, str] = {}
        for key, value in (member.pax_headers or {}).items():
            if not key.startswith(_XATTR):
                continue
            attr = key[len(_XATTR):]
            if attr == "user.mime_type" and value.strip():
                content_type = value.strip()
            elif attr.startswith("user.meta.") and len(attr) > len("user.meta."):
                meta[f"X-Object-Meta-{hdr.normal_key(attr[len('user.meta.'):])}"] = value
        source = tar.extractfile(member)
        assert source is not None
        md5 = hashlib.md5(usedforsecurity=False)
        size = bulk.blocks.block_size

        def read_block() -> bytes:
            data: bytes = source.read(size)
            md5.update(data)
            return data

        hashes: list[str] = []
        stored: list[tuple[str, int]] = []
        total = 0
        try:
            while True:
                data = await bulk.in_thread(read_block)
                if not data:
                    break
                hashes.extend(await store.put([data]))
                stored.append((hashes[-1], len(data)))
                total += len(data)
            await bulk.backend.put_object(
                self.user, self.account, target.container, target.name, size=total,
                hashes=hashes or [EMPTY_HASH], content_type=content_type,
                checksum=md5.hexdigest(), meta=meta)
        except BaseException:
            # Stored but in no object: the user's, bounded like block uploads.
            await bulk.backend.record_uploads(self.user, stored)
            raise


__all__ = ["COMPRESSIONS", "MAX_CONTAINERS_PER_EXTRACTION", "MAX_FAILED_EXTRACTIONS", "Bulk"]
