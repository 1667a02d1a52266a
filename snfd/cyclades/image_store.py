"""Read-only SQL of the image registry (``*_txn`` functions only) over the
storage service's tables (``snfd/pithos/schema``).

An image is the current version of a Pithos object that carries the
``plankton:name`` attribute.  These functions find such versions by
object uuid, by path, or as the candidates of a user's image listing, and
hand back plain ``ImageRow`` values with their ``plankton:*`` attributes
and the object's own sharing.  Every change of an image goes through the
storage backend (``snfd.pithos.backend.Backend``), never through here, so
that versions, statistics, quota and sharing rules stay the storage
service's.

Domain.  ``ATTRIBUTE_DOMAIN`` names the attribute domain the
``plankton:*`` keys live in.  The storage backend writes object metadata
in its ``pithos`` domain only, so the registry keeps its keys there, under
the ``plankton:`` prefix, which the object store API never shows (it shows
``X-Object-Meta-*`` and content headers only) and which a metadata
replacement through that API keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from snfd.pithos import store as pithos_store

ATTRIBUTE_DOMAIN = pithos_store.DOMAIN
PREFIX = "plankton:"
# The attribute whose presence makes an object an image.
NAME_KEY = PREFIX + "name"

_COLUMNS = ("n.path, v.serial, v.uuid, v.hash, v.size, v.type, v.mtime, v.checksum")


@attrs.frozen
class ImageRow:
    """The current version of an object that may be an image.

    ``attributes`` holds its ``plankton:*`` attributes (prefix kept);
    ``read``/``write`` the sharing entries set on the object's own path
    and ``shared`` whether there are any (then that sharing alone decides
    who may read it; otherwise an ancestor's may).
    """

    account: str
    container: str
    name: str
    serial: int
    uuid: str
    hash: str
    size: int
    type: str
    mtime: float
    checksum: str
    attributes: dict[str, str] = attrs.Factory(dict)
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    shared: bool = False

    @property
    def path(self) -> str:
        return f"{self.account}/{self.container}/{self.name}"

    @property
    def registered(self) -> bool:
        return NAME_KEY in self.attributes


def _rows_txn(txn: Any, found: Sequence[Sequence[Any]]) -> list[ImageRow]:
    """``ImageRow``s of ``(path, serial, uuid, hash, size, type, mtime,
    checksum)`` rows, with their attributes and own sharing."""
    if not found:
        return []
    serials = [int(r[1]) for r in found]
    txn.execute(
        """SELECT serial, key, value FROM pithos_attributes
           WHERE serial = ANY(%s) AND domain = %s AND starts_with(key, %s)""",
        (serials, ATTRIBUTE_DOMAIN, PREFIX))
    attributes: dict[int, dict[str, str]] = {}
    for serial, key, value in txn.fetchall():
        attributes.setdefault(int(serial), {})[key] = value
    sharing = pithos_store.permissions_txn(txn, [r[0] for r in found])
    out = []
    for path, serial, uuid, hash_, size, type_, mtime, checksum in found:
        account, container, name = str(path).split("/", 2)
        perms = sharing.get(path)
        out.append(ImageRow(
            account, container, name, int(serial), uuid, hash_, int(size), type_,
            float(mtime), checksum, attributes.get(int(serial), {}),
            perms.read if perms else (), perms.write if perms else (), perms is not None))
    return out


def image_by_uuid_txn(txn: Any, uuid: str) -> ImageRow | None:
    """The current (not deleted) version of the object with ``uuid``,
    registered or not."""
    txn.execute(
        f"""SELECT {_COLUMNS} FROM pithos_versions v
            JOIN pithos_nodes n ON n.latest_version = v.serial
            WHERE v.uuid = %s AND v.cluster = %s""", (uuid, pithos_store.NORMAL))
    rows = _rows_txn(txn, txn.fetchall())
    return rows[0] if rows else None


def image_at_txn(txn: Any, path: str) -> ImageRow | None:
    """The current version of the object at ``path``
    (``<account>/<container>/<name>``), registered or not."""
    txn.execute(
        f"""SELECT {_COLUMNS} FROM pithos_nodes n
            JOIN pithos_versions v ON v.serial = n.latest_version
            WHERE n.path = %s AND v.cluster = %s""", (path, pithos_store.NORMAL))
    rows = _rows_txn(txn, txn.fetchall())
    return rows[0] if rows else None


def entries_txn(txn: Any, user: str) -> frozenset[str]:
    """The sharing entries that name ``user``: the uuid itself, ``*`` and
    the ``<owner>:<group>`` of every group the user is in."""
    return frozenset({user, "*", *pithos_store.memberships_txn(txn, user)})


def candidate_images_txn(txn: Any, user: str,
                         entries: Iterable[str]) -> list[ImageRow]:
    """Registered images ``user`` may be able to read: those of the user's
    own account, and those with a sharing entry among ``entries`` on their
    own path or on an ancestor path (a directory object, the container,
    the account).  A superset: the closest sharing decides (see
    ``snfd.pithos.backend``)."""
    lo = user + "/"
    txn.execute(
        f"""SELECT {_COLUMNS} FROM pithos_nodes n
            JOIN pithos_versions v ON v.serial = n.latest_version AND v.cluster = %s
            JOIN pithos_attributes a ON a.serial = v.serial AND a.domain = %s
                                     AND a.key = %s
            WHERE (n.path >= %s AND n.path < %s)
               OR EXISTS (
                   SELECT 1 FROM pithos_permissions p
                   WHERE p.member = ANY(%s)
                     AND (p.path = n.path
                          OR left(n.path, length(p.path) + 1) = p.path || '/'))
            ORDER BY n.path""",
        (pithos_store.NORMAL, ATTRIBUTE_DOMAIN, NAME_KEY, lo, pithos_store.successor(lo),
         sorted(set(entries))))
    return _rows_txn(txn, txn.fetchall())


__all__ = ["ATTRIBUTE_DOMAIN", "NAME_KEY", "PREFIX", "ImageRow", "candidate_images_txn",
           "entries_txn", "image_at_txn", "image_by_uuid_txn"]
