"""The object store other services use (``IObjectStore``): reads, attribute
domains, sharing and hashmap writes over the storage ``Backend``.

Every check is the backend's own: writes go through its public methods
(versions, statistics, quota, sharing syntax), and the reads of this
module decide who may read what with the backend's access rule
(``snfd.pithos.permissions.access_txn``), inside the same transaction as
the read.  SQL lives in ``snfd.pithos.store``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from zope.interface import implementer

from snfd import errors
from snfd.interfaces import IObjectStore, ObjectHashmap, Sharing, StoredObject
from snfd.pithos import store
from snfd.pithos.backend import KEEP, Backend
from snfd.pithos.local import put_file_blocks
from snfd.pithos.model import Permissions
from snfd.pithos.permissions import DENIED, access_txn, entries_txn
from snfd.pithos.store import NORMAL, Version
from snfd.pithos.validation import check_path

T = TypeVar("T")

MAX_DOMAIN = 64


def _check_domain(domain: str | None) -> None:
    if domain is None:
        return
    if (not isinstance(domain, str) or not domain or domain == store.DOMAIN
            or "\x00" in domain or len(domain) > MAX_DOMAIN):
        raise ValueError(f"Not an attribute domain of the object store: {domain!r}")


def _gone() -> errors.NotFound:
    return errors.NotFound("Object does not exist.")


async def _hidden(work: Awaitable[T]) -> T:
    """``work``'s result; the API's 403 for a path the user may not read
    (``permissions.DENIED``) becomes this seam's ``NotFound`` (see
    ``IObjectStore``: other services learn nothing of unreadable files)."""
    try:
        return await work
    except errors.Forbidden as e:
        if e.message == DENIED:
            raise _gone() from None
        raise


@implementer(IObjectStore)
class PithosObjects:
    """``IObjectStore`` over a storage ``Backend`` (see the module
    docstring and the interface)."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.db = backend.db
        # Operator content (``store_file``) is charged to nobody's quota.
        self._uncharged = Backend(backend.db, backend.blocks, None, backend.clock,
                                  public_token_length=backend.public_token_length,
                                  policies=backend.policies, settings=backend.settings)

    @property
    def block_size(self) -> int:
        return self.backend.block_size

    # -- reads ----------------------------------------------------------------

    async def object_at(self, user: str, account: str, container: str, name: str,
                        domain: str | None = None, project: str | None = None,
                        ) -> StoredObject:
        _check_domain(domain)
        check_path(account, container, name)
        found: StoredObject = await self.db.run(
            "pithos.objects.at", self._at_txn, user, f"{account}/{container}/{name}", domain,
            project)
        return found

    def _at_txn(self, txn: Any, user: str, path: str, domain: str | None,
                project: str | None) -> StoredObject:
        if not self._readable_txn(txn, user, path, project):
            raise _gone()
        v = store.latest_txn(txn, path)
        if v is None or v.cluster != NORMAL:
            raise _gone()
        return self._stored_txn(txn, [(path, v)], domain)[0]

    async def object_by_uuid(self, user: str, uuid: str, domain: str | None = None,
                             project: str | None = None) -> StoredObject:
        _check_domain(domain)
        if not isinstance(uuid, str) or not uuid or len(uuid) > 128 or "\x00" in uuid:
            raise _gone()
        found: StoredObject = await self.db.read(
            "pithos.objects.by_uuid", self._by_uuid_txn, user, uuid, domain, project)
        return found

    def _by_uuid_txn(self, txn: Any, user: str, uuid: str, domain: str | None,
                     project: str | None) -> StoredObject:
        found = store.current_by_uuid_txn(txn, uuid)
        if found is None or not self._readable_txn(txn, user, found[0], project):
            raise _gone()
        return self._stored_txn(txn, [found], domain)[0]

    async def hashmap(self, user: str, account: str, container: str,
                      name: str, project: str | None = None) -> ObjectHashmap:
        info = await _hidden(self.backend.object(user, account, container, name,
                                                 project=project))
        return ObjectHashmap(info.serial, info.size, tuple(info.hashes or ()))

    async def find(self, user: str, domain: str, key: str,
                   project: str | None = None) -> list[StoredObject]:
        _check_domain(domain)
        found: list[StoredObject] = await self.db.run(
            "pithos.objects.find", self._find_txn, user, domain, key, project)
        return found

    def _find_txn(self, txn: Any, user: str, domain: str, key: str,
                  project: str | None) -> list[StoredObject]:
        entries = sorted(entries_txn(txn, user, project=project))
        rows = store.with_attribute_txn(txn, user, entries, domain, key)
        readable = [(path, v) for path, v in rows
                    if self._readable_txn(txn, user, path, project)]
        return self._stored_txn(txn, readable, domain)

    def _readable_txn(self, txn: Any, user: str, path: str,
                      project: str | None = None) -> bool:
        """Whether the backend's access rule lets ``user`` acting in
        ``project`` read the object path ``path``."""
        account, container, name = path.split("/", 2)
        return access_txn(txn, user, account, container, name, detail=False,
                          project=project).read

    def _stored_txn(self, txn: Any, rows: Sequence[tuple[str, Version]],
                    domain: str | None) -> list[StoredObject]:
        attributes = (store.domain_attributes_txn(txn, [v.serial for _, v in rows], domain)
                      if domain is not None else {})
        sharing = store.permissions_txn(txn, [path for path, _ in rows])
        out = []
        for path, v in rows:
            account, container, name = path.split("/", 2)
            perms = sharing.get(path)
            out.append(StoredObject(
                account, container, name, v.serial, v.uuid, v.hash, v.checksum, v.size,
                v.type, v.mtime, attributes.get(v.serial, {}),
                Sharing(perms.read, perms.write) if perms else Sharing()))
        return out

    # -- changes --------------------------------------------------------------

    async def create_from_hashmap(self, user: str, account: str, container: str, name: str,
                                  size: int, hashes: Sequence[str],
                                  content_type: str = "application/octet-stream",
                                  ) -> StoredObject:
        check_path(account, container, name)
        await _hidden(self._create(self.backend, user, account, container, name, size,
                                   hashes, content_type))
        return await self.object_at(user, account, container, name)

    @staticmethod
    async def _create(backend: Backend, user: str, account: str, container: str, name: str,
                      size: int, hashes: Sequence[str], content_type: str) -> None:
        async def put() -> None:
            await backend.put_object(user, account, container, name, size=size,
                                     hashes=list(hashes), content_type=content_type)

        try:
            await put()
        except errors.NotFound:
            # For the account's owner this is only ever a missing container.
            if user != account:
                raise
            await backend.put_container(user, account, container, {}, {})
            await put()

    async def store_file(self, user: str, account: str, container: str, name: str,
                         source: Path,
                         content_type: str = "application/octet-stream") -> StoredObject:
        check_path(account, container, name)
        size, hashes = await put_file_blocks(self.backend.blocks, self.block_size, source)
        await self._create(self._uncharged, user, account, container, name, size, hashes,
                           content_type)
        return await self.object_at(user, account, container, name)

    async def set_attributes(self, user: str, account: str, container: str, name: str,
                             domain: str, attributes: Mapping[str, str],
                             replace: bool = False,
                             sharing: Sharing | None = None) -> StoredObject:
        _check_domain(domain)
        if domain is None:
            raise ValueError("set_attributes needs a domain")
        await _hidden(self.backend.update_object(
            user, account, container, name, dict(attributes), replace,
            permissions=KEEP if sharing is None else Permissions(sharing.read, sharing.write),
            domain=domain))
        return await self.object_at(user, account, container, name, domain)

    async def set_sharing(self, user: str, account: str, container: str, name: str,
                          sharing: Sharing) -> None:
        await _hidden(self.backend.update_object(
            user, account, container, name, None, False,
            permissions=Permissions(sharing.read, sharing.write)))

    async def delete(self, user: str, account: str, container: str, name: str) -> None:
        await _hidden(self.backend.delete_object(user, account, container, name))


__all__ = ["PithosObjects"]
