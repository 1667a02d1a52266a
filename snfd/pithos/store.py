"""SQL of the storage service (``*_txn`` functions only): the tree of
accounts, containers and objects, versions and their hashmaps, metadata
(the ``pithos`` domain, and the other domains an object keeps across its
versions), statistics, policies, sharing, groups, public links, and the
bookkeeping of the block garbage collector.  Schema: ``snfd/pithos/schema``.

Paths are ``<account>``, ``<account>/<container>`` and
``<account>/<container>/<name>``; every path column compares byte-wise
(``COLLATE "C"``), so ranges over paths follow code point order.  Callers
(``snfd.pithos.writes``, ``snfd.pithos.objects``) hold the container's row
lock for writes; these functions neither check permissions nor decide
policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from snfd.db import prepared
from snfd.pithos.hashmap import DIGEST_SIZE, EMPTY_HASH
from snfd.pithos.model import Permissions

NORMAL, HISTORY, DELETED = 0, 1, 2
READ, WRITE = 0, 1

# pg_advisory_xact_lock key: exclusive for a garbage collection batch,
# shared by every transaction that makes a version reference blocks.
GC_LOCK = 0x736E6664_0070
# A mark of the garbage collector older than this is a leftover of a
# crashed collection and no longer hides blocks.
GC_MARK_SECONDS = 600

# pg_advisory_xact_lock(class, hashtext(path)) class of one object's
# writes (the two-key space never meets the one-key locks).
OBJECT_LOCK_CLASS = 0x706F626A  # "pobj"

DOMAIN = "pithos"
STORAGE_POLICY = "storage_policy"
"""The container policy key of its storage policy (``snfd.pithos.policies``)."""
# The attribute of an expiring object (``snfd.pithos.expiry``): its time,
# ten digits, so that text order is time order.
DELETE_AT = "X-Delete-At"

_VERSION = ("v.serial, v.node, v.hash, v.size, v.type, v.source, v.mtime, v.muser,"
            " v.uuid, v.checksum, v.cluster, v.map_id")


@attrs.frozen
class Version:
    """One row of ``pithos_versions``."""

    serial: int
    node: int
    hash: str
    size: int
    type: str
    source: int | None
    mtime: float
    muser: str
    uuid: str
    checksum: str
    cluster: int
    map_id: int | None


@attrs.frozen
class Stats:
    population: int = 0
    size: int = 0
    mtime: float = 0.0


@attrs.frozen
class ContainerRow:
    """A container in an account listing, with its current statistics."""

    node: int
    name: str
    stats: Stats


@attrs.frozen
class MetaFilter:
    """One ``meta`` listing filter: ``op`` is ``has``, ``not`` or a
    comparison (``= != < > <= >=``) of the value of attribute ``key``."""

    key: str
    op: str
    value: str = ""


_OPS = {"=": "=", "!=": "<>", "<": "<", ">": ">", "<=": "<=", ">=": ">="}


def _version(row: Sequence[Any]) -> Version:
    return Version(int(row[0]), int(row[1]), row[2], int(row[3]), row[4],
                   None if row[5] is None else int(row[5]), float(row[6]), row[7],
                   row[8], row[9], int(row[10]), None if row[11] is None else int(row[11]))


def successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix``
    (``None``: there is none, every string from ``prefix`` on matches)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code == 0xD800:
            code = 0xE000  # surrogates cannot be stored
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


# -- garbage collection -------------------------------------------------------

def gc_share_txn(txn: Any) -> None:
    """Hold the collector off until this transaction ends."""
    prepared.execute(txn, "SELECT pg_advisory_xact_lock_shared(%s)", (GC_LOCK,))


def gc_marked_txn(txn: Any, hashes: Iterable[str]) -> list[str]:
    """Which of ``hashes`` a running collection is deleting (call after
    ``gc_share_txn``)."""
    wanted = sorted({h for h in hashes if h != EMPTY_HASH})
    if not wanted:
        return []
    prepared.execute(txn,
        """SELECT encode(hash, 'hex') FROM pithos_gc_pending
           WHERE hash = ANY(%s)
             AND marked_at > now() - make_interval(secs => %s)""",
        ([bytes.fromhex(h) for h in wanted], GC_MARK_SECONDS))
    return [row[0] for row in txn.fetchall()]


def gc_mark_txn(txn: Any, names: Sequence[str],
                storage: Sequence[str] | None = None) -> list[str]:
    """Under the collector's exclusive lock: which of ``names`` no map
    references; they are marked as being deleted and returned.
    ``storage``: only references by versions in containers whose
    ``storage_policy`` key is one of these count (the collection of a
    storage policy's own block store)."""
    txn.execute("SELECT pg_advisory_xact_lock(%s)", (GC_LOCK,))
    candidates = [n for n in names if n != EMPTY_HASH]
    if not candidates:
        return []
    raw = [bytes.fromhex(n) for n in candidates]
    if storage is None:
        txn.execute("""SELECT DISTINCT encode(hash, 'hex') FROM pithos_map_blocks
                       WHERE hash = ANY(%s)""", (raw,))
    else:
        txn.execute(
            """SELECT DISTINCT encode(mb.hash, 'hex') FROM pithos_map_blocks mb
               JOIN pithos_versions v ON v.map_id = mb.map_id
               JOIN pithos_nodes o ON o.node = v.node
               JOIN pithos_policy p ON p.node = o.parent AND p.key = %s
               WHERE mb.hash = ANY(%s) AND p.value = ANY(%s)""",
            (STORAGE_POLICY, raw, list(storage)))
    used = {row[0] for row in txn.fetchall()}
    unused = [n for n in candidates if n not in used]
    if unused:
        txn.execute(
            """INSERT INTO pithos_gc_pending (hash)
               SELECT unnest(%s::bytea[])
               ON CONFLICT (hash) DO UPDATE SET marked_at = now()""",
            ([bytes.fromhex(n) for n in unused],))
    return unused


def gc_unmark_txn(txn: Any, names: Sequence[str] | None = None) -> None:
    """Forget the marks of ``names`` (``None``: every mark)."""
    if names is None:
        txn.execute("DELETE FROM pithos_gc_pending")
    else:
        txn.execute("DELETE FROM pithos_gc_pending WHERE hash = ANY(%s)",
                    ([bytes.fromhex(n) for n in names],))


# -- block uploads ------------------------------------------------------------

def record_uploads_txn(txn: Any, account: str, blocks: Sequence[tuple[str, int]],
                       reservation: int | None = None) -> None:
    """Record ``(hash, size)`` blocks as uploaded by ``account`` (again:
    the record is refreshed), in place of its ``reservation``."""
    if reservation is not None:
        txn.execute("DELETE FROM pithos_upload_reservations WHERE id = %s", (reservation,))
    wanted = {h: n for h, n in blocks if h != EMPTY_HASH}
    if not wanted:
        return
    names = sorted(wanted)
    txn.execute(
        """INSERT INTO pithos_uploads AS u (account, hash, size)
           SELECT %s, h, n FROM unnest(%s::bytea[], %s::bigint[]) AS t (h, n)
           ON CONFLICT (account, hash) DO UPDATE SET created_at = now()""",
        (account, [bytes.fromhex(h) for h in names], [wanted[h] for h in names]))


def reserve_uploads_txn(txn: Any, account: str, size: int | None, bound: int,
                        most: int) -> tuple[int, int] | None:
    """Take ``size`` bytes (``None``: all that is left, at most ``most``)
    of ``account``'s ``bound`` on unreferenced uploads, counting its
    recorded uploads and other reservations: ``(reservation, bytes)``,
    or ``None`` when they do not fit (nothing taken).  Serialized per
    account."""
    txn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                ("pithos_uploads:" + account,))
    left = bound - uploads_size_txn(txn, account)
    if size is None:
        wanted = min(left, most)
        if wanted <= 0:
            return None
    elif size > left:
        return None
    else:
        wanted = size
    txn.execute("""INSERT INTO pithos_upload_reservations (account, size)
                   VALUES (%s, %s) RETURNING id""", (account, wanted))
    return int(txn.fetchone()[0]), wanted


def release_reservation_txn(txn: Any, reservation: int) -> None:
    """Give back the room of an upload that stored nothing."""
    txn.execute("DELETE FROM pithos_upload_reservations WHERE id = %s", (reservation,))


def uploaded_txn(txn: Any, account: str, hashes: Iterable[str]) -> set[str]:
    """Which of ``hashes`` ``account`` uploaded (``record_uploads_txn``)."""
    wanted = sorted({h for h in hashes if h != EMPTY_HASH})
    if not wanted:
        return set()
    txn.execute(
        """SELECT encode(hash, 'hex') FROM pithos_uploads
           WHERE account = %s AND hash = ANY(%s)""",
        (account, [bytes.fromhex(h) for h in wanted]))
    return {row[0] for row in txn.fetchall()}


def forget_uploads_txn(txn: Any, account: str, hashes: Iterable[str]) -> None:
    """Drop ``account``'s upload records of ``hashes`` (now referenced)."""
    wanted = sorted({h for h in hashes if h != EMPTY_HASH})
    if wanted:
        prepared.execute(txn, "DELETE FROM pithos_uploads WHERE account = %s AND hash = ANY(%s)",
                         (account, [bytes.fromhex(h) for h in wanted]))


def uploads_size_txn(txn: Any, account: str) -> int:
    """The bytes of the blocks ``account`` uploaded that no version of its
    references yet (the records ``forget_uploads_txn`` has not dropped),
    and of its uploads under way (their reservations)."""
    txn.execute(
        """SELECT (SELECT COALESCE(sum(size), 0) FROM pithos_uploads WHERE account = %s)
                + (SELECT COALESCE(sum(size), 0) FROM pithos_upload_reservations
                   WHERE account = %s)""", (account, account))
    return int(txn.fetchone()[0])


def prune_uploads_txn(txn: Any, before: float) -> int:
    """Drop the upload records older than ``before`` (seconds since the
    epoch): the garbage collector may take their blocks.  How many."""
    txn.execute("DELETE FROM pithos_upload_reservations WHERE created_at < to_timestamp(%s)",
                (before,))
    txn.execute("DELETE FROM pithos_uploads WHERE created_at < to_timestamp(%s)", (before,))
    return int(txn.rowcount)


def blocks_under_txn(txn: Any, prefix: str, hashes: Iterable[str]) -> set[str]:
    """Which of ``hashes`` a version (any, history included) of an object
    whose path starts with ``prefix`` references."""
    wanted = sorted({h for h in hashes if h != EMPTY_HASH})
    if not wanted:
        return set()
    txn.execute(
        """SELECT DISTINCT encode(mb.hash, 'hex') FROM pithos_map_blocks mb
           JOIN pithos_versions v ON v.map_id = mb.map_id
           JOIN pithos_nodes n ON n.node = v.node
           WHERE mb.hash = ANY(%s) AND starts_with(n.path, %s)""",
        ([bytes.fromhex(h) for h in wanted], prefix))
    return {row[0] for row in txn.fetchall()}


def current_block_paths_txn(txn: Any, hashes: Iterable[str],
                            limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` ``(hash, object path)`` pairs: current versions
    referencing any of ``hashes``."""
    wanted = sorted({h for h in hashes if h != EMPTY_HASH})
    if not wanted:
        return []
    txn.execute(
        """SELECT DISTINCT encode(mb.hash, 'hex'), n.path FROM pithos_map_blocks mb
           JOIN pithos_versions v ON v.map_id = mb.map_id AND v.cluster = %s
           JOIN pithos_nodes n ON n.node = v.node
           WHERE mb.hash = ANY(%s) LIMIT %s""",
        (NORMAL, [bytes.fromhex(h) for h in wanted], limit))
    return [(row[0], row[1]) for row in txn.fetchall()]


# -- maps ---------------------------------------------------------------------

def insert_map_txn(txn: Any, hashes: Sequence[str]) -> int:
    """Store a hashmap; its id."""
    raw = [bytes.fromhex(h) for h in hashes]
    prepared.execute(txn, "INSERT INTO pithos_maps (hashes) VALUES (%s) RETURNING map_id",
                     (b"".join(raw),))
    map_id: int = txn.fetchone()[0]
    prepared.execute(txn,
        """INSERT INTO pithos_map_blocks (hash, map_id)
           SELECT DISTINCT h, %s::bigint FROM unnest(%s::bytea[]) AS h""",
        (map_id, sorted(set(raw))))
    return map_id


def map_hashes_txn(txn: Any, map_id: int | None) -> list[str]:
    """The hashmap with that id (``[EMPTY_HASH]`` for none)."""
    if map_id is None:
        return [EMPTY_HASH]
    txn.execute("SELECT hashes FROM pithos_maps WHERE map_id = %s", (map_id,))
    row = txn.fetchone()
    if row is None:
        return [EMPTY_HASH]
    return _hashes(row[0])


def _hashes(raw: Any) -> list[str]:
    """The hex hashes of a stored hashmap (``pithos_maps.hashes``)."""
    raw = bytes(raw)
    return [raw[i:i + DIGEST_SIZE].hex() for i in range(0, len(raw), DIGEST_SIZE)]


def release_maps_txn(txn: Any, map_ids: Iterable[int | None]) -> int:
    """Delete those maps no version references any longer; how many."""
    ids = sorted({m for m in map_ids if m is not None})
    if not ids:
        return 0
    txn.execute(
        """DELETE FROM pithos_maps m WHERE m.map_id = ANY(%s)
           AND NOT EXISTS (SELECT 1 FROM pithos_versions v WHERE v.map_id = m.map_id)""",
        (ids,))
    count: int = txn.rowcount
    return count


# -- nodes --------------------------------------------------------------------

def node_txn(txn: Any, path: str, lock: str | None = None) -> int | None:
    """The node of ``path``; ``lock`` ``"update"``/``"share"`` locks its row."""
    suffix = {None: "", "update": " FOR UPDATE", "share": " FOR SHARE"}[lock]
    prepared.execute(txn, "SELECT node FROM pithos_nodes WHERE path = %s" + suffix, (path,))
    row = txn.fetchone()
    return None if row is None else int(row[0])


def lock_path_txn(txn: Any, path: str) -> None:
    """Serialize, until the transaction ends, the writes of the object at
    ``path`` that hold its container only share-locked."""
    prepared.execute(txn, "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                     (OBJECT_LOCK_CLASS, path))


def create_node_txn(txn: Any, parent: int | None, path: str) -> int | None:
    """Create the node of ``path``; ``None`` if it exists."""
    txn.execute(
        """INSERT INTO pithos_nodes (parent, path) VALUES (%s, %s)
           ON CONFLICT (path) DO NOTHING RETURNING node""", (parent, path))
    row = txn.fetchone()
    return None if row is None else int(row[0])


def ensure_account_txn(txn: Any, account: str, mtime: float) -> int:
    """The account's node, created (with its statistics row) if absent."""
    node = node_txn(txn, account)
    if node is not None:
        return node
    created = create_node_txn(txn, None, account)
    if created is None:
        node = node_txn(txn, account)
        assert node is not None
        return node
    txn.execute(
        """INSERT INTO pithos_statistics (node, cluster, mtime) VALUES (%s, 0, %s)
           ON CONFLICT DO NOTHING""", (created, mtime))
    return created


def children_txn(txn: Any, parent: int) -> int:
    """How many child nodes ``parent`` has."""
    txn.execute("SELECT count(*) FROM pithos_nodes WHERE parent = %s", (parent,))
    count: int = txn.fetchone()[0]
    return count


def types_txn(txn: Any, paths: Sequence[str]) -> dict[str, tuple[str, int]]:
    """``{path: (content type, cluster)}`` of the latest versions of the
    object paths that exist among ``paths``."""
    if not paths:
        return {}
    txn.execute(
        """SELECT n.path, v.type, v.cluster FROM pithos_nodes n
           JOIN pithos_versions v ON v.serial = n.latest_version
           WHERE n.path = ANY(%s)""", (list(paths),))
    return {row[0]: (row[1], int(row[2])) for row in txn.fetchall()}


# -- statistics ---------------------------------------------------------------

def add_stats_txn(txn: Any, node: int, changes: Mapping[int, tuple[int, int]],
                  mtime: float | None) -> None:
    """Add ``{cluster: (population, size)}`` deltas to a node's statistics
    and move its modification time forward to ``mtime`` (if given)."""
    rows = [(node, cluster, pop, size, mtime or 0.0)
            for cluster, (pop, size) in sorted(changes.items()) if pop or size]
    if mtime is not None and not any(r[1] == NORMAL for r in rows):
        rows.insert(0, (node, NORMAL, 0, 0, mtime))
    if not rows:
        return
    # One statement; the rows in cluster order, as the locks are taken.
    prepared.execute(txn,
        """INSERT INTO pithos_statistics AS s (node, cluster, population, size, mtime)
           SELECT %s::bigint, u.cluster, u.population, u.size, u.mtime
           FROM unnest(%s::smallint[], %s::bigint[], %s::bigint[], %s::float8[])
                WITH ORDINALITY AS u(cluster, population, size, mtime, i)
           ORDER BY u.i
           ON CONFLICT (node, cluster) DO UPDATE SET
               population = s.population + EXCLUDED.population,
               size = s.size + EXCLUDED.size,
               mtime = GREATEST(s.mtime, EXCLUDED.mtime)""",
        (node, [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
         [r[4] for r in rows]))


def stats_txn(txn: Any, node: int) -> dict[int, Stats]:
    """A node's statistics by cluster."""
    txn.execute("""SELECT cluster, population, size, mtime FROM pithos_statistics
                   WHERE node = %s""", (node,))
    return {int(r[0]): Stats(int(r[1]), int(r[2]), float(r[3])) for r in txn.fetchall()}


def account_totals_txn(txn: Any, account_node: int) -> tuple[int, int, float, int]:
    """``(containers, bytes, mtime, objects)`` of an account: sums over
    its containers' current statistics; mtime the latest change anywhere."""
    txn.execute(
        """SELECT count(n.node), coalesce(sum(s.size), 0), max(s.mtime),
                  coalesce(sum(s.population), 0)
           FROM pithos_nodes n
           LEFT JOIN pithos_statistics s ON s.node = n.node AND s.cluster = 0
           WHERE n.parent = %s""", (account_node,))
    count, size, mtime, objects = txn.fetchone()
    own = stats_txn(txn, account_node).get(NORMAL, Stats())
    latest = max(own.mtime, float(mtime) if mtime is not None else 0.0)
    return int(count), int(size), latest, int(objects)


def storage_totals_txn(txn: Any, account_node: int) -> dict[str, tuple[int, int, int]]:
    """``{storage policy key: (containers, objects, bytes)}`` of an
    account's containers (``""``: containers with no such key)."""
    txn.execute(
        """SELECT coalesce(p.value, ''), count(n.node), coalesce(sum(s.population), 0),
                  coalesce(sum(s.size), 0)
           FROM pithos_nodes n
           LEFT JOIN pithos_policy p ON p.node = n.node AND p.key = %s
           LEFT JOIN pithos_statistics s ON s.node = n.node AND s.cluster = 0
           WHERE n.parent = %s GROUP BY 1""", (STORAGE_POLICY, account_node))
    return {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in txn.fetchall()}


def stats_as_of_txn(txn: Any, container: int, until: float) -> Stats:
    """A container's current-cluster statistics as they were at ``until``."""
    txn.execute(
        """SELECT count(*), coalesce(sum(v.size), 0), max(v.mtime)
           FROM pithos_nodes n
           JOIN LATERAL (SELECT size, mtime, cluster FROM pithos_versions w
                         WHERE w.node = n.node AND w.mtime <= %s
                         ORDER BY w.mtime DESC, w.serial DESC LIMIT 1) v ON true
           WHERE n.parent = %s AND v.cluster <> 2""", (until, container))
    count, size, _ = txn.fetchone()
    txn.execute(
        """SELECT max(v.mtime) FROM pithos_versions v
           JOIN pithos_nodes n ON n.node = v.node
           WHERE n.parent = %s AND v.mtime <= %s""", (container, until))
    (mtime,) = txn.fetchone()
    return Stats(int(count), int(size), float(mtime) if mtime is not None else 0.0)


# -- policies and account/container metadata ----------------------------------

def policy_txn(txn: Any, node: int) -> dict[str, str]:
    prepared.execute(txn, "SELECT key, value FROM pithos_policy WHERE node = %s", (node,))
    return dict(txn.fetchall())


def policies_txn(txn: Any, nodes: Sequence[int]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {n: {} for n in nodes}
    if nodes:
        txn.execute("SELECT node, key, value FROM pithos_policy WHERE node = ANY(%s)",
                    (list(nodes),))
        for node, key, value in txn.fetchall():
            out[int(node)][key] = value
    return out


def set_policy_txn(txn: Any, node: int, policy: Mapping[str, str | None]) -> None:
    """Set policy keys; ``None`` removes one (back to its default)."""
    for key, value in sorted(policy.items()):
        if value is None:
            txn.execute("DELETE FROM pithos_policy WHERE node = %s AND key = %s", (node, key))
        else:
            txn.execute(
                """INSERT INTO pithos_policy (node, key, value) VALUES (%s, %s, %s)
                   ON CONFLICT (node, key) DO UPDATE SET value = EXCLUDED.value""",
                (node, key, value))


def node_meta_txn(txn: Any, node: int) -> dict[str, str]:
    txn.execute("SELECT key, value FROM pithos_node_meta WHERE node = %s", (node,))
    return dict(txn.fetchall())


def path_meta_txn(txn: Any, path: str) -> dict[str, str]:
    """``node_meta_txn`` of the node at ``path`` (empty when there is none)."""
    prepared.execute(txn, """SELECT m.key, m.value FROM pithos_node_meta m
                             JOIN pithos_nodes n ON n.node = m.node WHERE n.path = %s""",
                     (path,))
    return dict(txn.fetchall())


def set_node_meta_txn(txn: Any, node: int, meta: Mapping[str, str]) -> None:
    """Make ``meta`` the node's whole metadata."""
    txn.execute("DELETE FROM pithos_node_meta WHERE node = %s", (node,))
    for key, value in sorted(meta.items()):
        txn.execute("INSERT INTO pithos_node_meta (node, key, value) VALUES (%s, %s, %s)",
                    (node, key, value))


def meta_keys_txn(txn: Any, container: int) -> list[str]:
    """The attribute keys the container's current objects use, sorted."""
    txn.execute("SELECT key FROM pithos_meta_keys WHERE container = %s ORDER BY key",
                (container,))
    return [row[0] for row in txn.fetchall()]


def adjust_meta_keys_txn(txn: Any, container: int, deltas: Mapping[str, int]) -> None:
    """Add ``deltas`` to the use counts of attribute keys in a container."""
    for key, delta in sorted(deltas.items()):
        if delta > 0:
            txn.execute(
                """INSERT INTO pithos_meta_keys AS k (container, key, refs)
                   VALUES (%s, %s, %s)
                   ON CONFLICT (container, key) DO UPDATE SET refs = k.refs + EXCLUDED.refs""",
                (container, key, delta))
        elif delta < 0:
            txn.execute("""DELETE FROM pithos_meta_keys
                           WHERE container = %s AND key = %s AND refs + %s <= 0""",
                        (container, key, delta))
            txn.execute("""UPDATE pithos_meta_keys SET refs = refs + %s
                           WHERE container = %s AND key = %s""", (delta, container, key))


# -- versions -----------------------------------------------------------------

def latest_txn(txn: Any, path: str) -> Version | None:
    """The newest version (any cluster) of the object at ``path``."""
    prepared.execute(txn,
        f"""SELECT {_VERSION} FROM pithos_nodes n
            JOIN pithos_versions v ON v.serial = n.latest_version
            WHERE n.path = %s""", (path,))
    row = txn.fetchone()
    return None if row is None else _version(row)


@attrs.frozen
class ObjectView:
    """What an object read is made of, read in one statement
    (``object_view_txn``)."""

    latest: Version | None
    chosen: Version | None
    meta: dict[str, str]
    hashes: list[str]
    public: str | None
    sharing: dict[str, Permissions]
    types: dict[str, tuple[str, int]]


_OBJECT_VIEW = (
    f"""SELECT
          ARRAY(SELECT ARRAY[p.path, p.access::text, p.member] FROM pithos_permissions p
                WHERE p.path = ANY(%(sharing)s::text[])),
          ARRAY(SELECT ARRAY[tn.path, tv.type, tv.cluster::text] FROM pithos_nodes tn
                JOIN pithos_versions tv ON tv.serial = tn.latest_version
                WHERE tn.path = ANY(%(types)s::text[]) AND EXISTS (
                    SELECT 1 FROM pithos_permissions tp WHERE tp.path = tn.path)),
          (SELECT token FROM pithos_public WHERE active AND path = %(path)s),
          ARRAY(SELECT ARRAY[a.key, a.value] FROM pithos_attributes a
                WHERE a.serial = v.serial AND a.domain = %(domain)s),
          (SELECT m.hashes FROM pithos_maps m WHERE m.map_id = v.map_id),
          {_VERSION.replace("v.", "l.")}, {_VERSION}
        FROM (SELECT 1) one
        LEFT JOIN pithos_nodes n ON n.path = %(path)s
        LEFT JOIN pithos_versions l ON l.serial = n.latest_version
        LEFT JOIN pithos_versions v
               ON v.serial = coalesce(%(version)s::bigint, n.latest_version)""")


def object_view_txn(txn: Any, path: str, version: int | None, sharing_of: Sequence[str],
                    types_of: Sequence[str]) -> ObjectView:
    """In one round trip: the newest version of the object at ``path``
    (``latest_txn``); ``chosen``, version ``version`` (``None``: the
    newest) if it exists, with its ``pithos`` attributes and hashmap
    (``attributes_txn``, ``map_hashes_txn``); the path's active public
    link; the sharing of those of ``sharing_of`` that have any
    (``permissions_txn``); and ``types_txn`` of those of ``types_of``
    that have a sharing."""
    prepared.execute(txn, _OBJECT_VIEW, {"sharing": list(sharing_of), "types": list(types_of),
                                        "path": path, "domain": DOMAIN,
                                        "version": version})
    row = txn.fetchone()
    perms, types, public, meta, raw = row[:5]
    width = len(_VERSION.split(","))
    latest_row, chosen_row = row[5:5 + width], row[5 + width:]
    latest = None if latest_row[0] is None else _version(latest_row)
    chosen = None if chosen_row[0] is None else _version(chosen_row)
    hashes = [EMPTY_HASH] if raw is None else _hashes(raw)
    return ObjectView(latest, chosen, dict(map(tuple, meta)), hashes, public,
                      _permissions((p, int(a), m) for p, a, m in perms),
                      {t[0]: (t[1], int(t[2])) for t in types})


def version_txn(txn: Any, serial: int) -> Version | None:
    txn.execute(f"SELECT {_VERSION} FROM pithos_versions v WHERE v.serial = %s", (serial,))
    row = txn.fetchone()
    return None if row is None else _version(row)


def version_as_of_txn(txn: Any, node: int, until: float) -> Version | None:
    """The newest version of a node with mtime <= ``until``."""
    txn.execute(
        f"""SELECT {_VERSION} FROM pithos_versions v WHERE v.node = %s AND v.mtime <= %s
            ORDER BY v.mtime DESC, v.serial DESC LIMIT 1""", (node, until))
    row = txn.fetchone()
    return None if row is None else _version(row)


def versions_txn(txn: Any, node: int) -> list[tuple[int, float]]:
    """``[(serial, mtime)]`` of a node's versions other than deletion
    markers, ascending."""
    txn.execute(
        """SELECT serial, mtime FROM pithos_versions WHERE node = %s AND cluster <> 2
           ORDER BY serial""", (node,))
    return [(int(s), float(m)) for s, m in txn.fetchall()]


def node_versions_txn(txn: Any, node: int) -> list[Version]:
    txn.execute(f"SELECT {_VERSION} FROM pithos_versions v WHERE v.node = %s"
                " ORDER BY v.serial", (node,))
    return [_version(row) for row in txn.fetchall()]


def history_rows_txn(txn: Any, container: int, *, lo: str | None = None,
                     hi: str | None = None, after: tuple[str, int] | None = None,
                     limit: int) -> list[tuple[str, Version, bool]]:
    """A page of every version (any cluster) of a container's objects as
    ``(path, version, newest)``: by path, and within a path newest first;
    ``newest`` says whether it is its node's newest version.  ``lo``..
    ``hi`` (inclusive, exclusive) bound the paths; ``after`` (a previous
    entry's ``(path, serial)``) starts strictly after it in that order."""
    where = ["n.parent = %s"]
    args: list[Any] = [container]
    _bounds(where, args, lo, hi, None, None)
    if after is not None:
        where.append("(n.path > %s OR (n.path = %s AND v.serial < %s))")
        args.extend([after[0], after[0], after[1]])
    txn.execute(
        f"""SELECT n.path, v.serial = n.latest_version, {_VERSION} FROM pithos_nodes n
            JOIN pithos_versions v ON v.node = n.node
            WHERE {' AND '.join(where)} ORDER BY n.path ASC, v.serial DESC LIMIT %s""",
        [*args, limit])
    return [(row[0], _version(row[2:]), bool(row[1])) for row in txn.fetchall()]


def insert_version_txn(txn: Any, node: int, *, hash: str, size: int, type: str,
                       source: int | None, mtime: float, muser: str, uuid: str,
                       checksum: str, cluster: int, map_id: int | None,
                       meta: Mapping[str, str], carry: int | None = None,
                       domains: Mapping[str, Mapping[str, str]] | None = None) -> Version:
    """Add a version (the node's newest) with its ``pithos`` attributes
    ``meta``, the attributes of every other domain of version ``carry``
    (if given) except the domains in ``domains``, and those (``{domain:
    attributes}``)."""
    prepared.execute(txn,
        f"""WITH v AS (
                INSERT INTO pithos_versions (node, hash, size, type, source, mtime,
                    muser, uuid, checksum, cluster, map_id)
                VALUES (%(node)s, %(hash)s, %(size)s, %(type)s, %(source)s, %(mtime)s,
                        %(muser)s, %(uuid)s, %(checksum)s, %(cluster)s, %(map_id)s)
                RETURNING *),
            newest AS (
                UPDATE pithos_nodes SET latest_version = (SELECT serial FROM v)
                WHERE node = %(node)s)
            SELECT {_VERSION} FROM v""",
        {"node": node, "hash": hash, "size": size, "type": type, "source": source,
         "mtime": mtime, "muser": muser, "uuid": uuid, "checksum": checksum,
         "cluster": cluster, "map_id": map_id})
    version = _version(txn.fetchone())
    for key, value in sorted(meta.items()):
        txn.execute(
            """INSERT INTO pithos_attributes (serial, domain, key, value)
               VALUES (%s, %s, %s, %s)""", (version.serial, DOMAIN, key, value))
    replaced = sorted(domains or {})
    if carry is not None:
        txn.execute(
            """INSERT INTO pithos_attributes (serial, domain, key, value)
               SELECT %s, domain, key, value FROM pithos_attributes
               WHERE serial = %s AND domain <> %s AND domain <> ALL(%s)""",
            (version.serial, carry, DOMAIN, replaced))
    for domain in replaced:
        assert domain != DOMAIN
        for key, value in sorted((domains or {})[domain].items()):
            txn.execute(
                """INSERT INTO pithos_attributes (serial, domain, key, value)
                   VALUES (%s, %s, %s, %s)""", (version.serial, domain, key, value))
    return version


def attributes_txn(txn: Any, serial: int) -> dict[str, str]:
    prepared.execute(txn, """SELECT key, value FROM pithos_attributes
                   WHERE serial = %s AND domain = %s""", (serial, DOMAIN))
    return dict(txn.fetchall())


def domain_attributes_txn(txn: Any, serials: Sequence[int],
                          domain: str) -> dict[int, dict[str, str]]:
    """``{serial: attributes}`` of those ``serials`` with attributes in
    ``domain``."""
    out: dict[int, dict[str, str]] = {}
    if not serials:
        return out
    txn.execute("""SELECT serial, key, value FROM pithos_attributes
                   WHERE serial = ANY(%s) AND domain = %s""", (sorted(set(serials)), domain))
    for serial, key, value in txn.fetchall():
        out.setdefault(int(serial), {})[key] = value
    return out


def current_by_uuid_txn(txn: Any, uuid: str) -> tuple[str, Version] | None:
    """``(path, version)`` of the current (not deleted) version of the
    object with ``uuid``."""
    txn.execute(
        f"""SELECT n.path, {_VERSION} FROM pithos_versions v
            JOIN pithos_nodes n ON n.latest_version = v.serial
            WHERE v.uuid = %s AND v.cluster = %s""", (uuid, NORMAL))
    row = txn.fetchone()
    return None if row is None else (row[0], _version(row[1:]))


def with_attribute_txn(txn: Any, account: str, entries: Sequence[str], domain: str,
                       key: str) -> list[tuple[str, Version]]:
    """``(path, version)`` by path of the current objects with attribute
    ``key`` in ``domain`` that are in ``account`` or have a sharing entry
    among ``entries`` on their own path or an ancestor path (a directory
    object, the container, the account).  A superset of what a user with
    those entries may read: the closest sharing decides (see
    ``snfd.pithos.permissions``)."""
    lo = account + "/"
    txn.execute(
        f"""SELECT n.path, {_VERSION} FROM pithos_attributes a
            JOIN pithos_versions v ON v.serial = a.serial AND v.cluster = %s
            JOIN pithos_nodes n ON n.latest_version = v.serial
            WHERE a.domain = %s AND a.key = %s
              AND ((n.path >= %s AND n.path < %s)
                   OR EXISTS (
                       SELECT 1 FROM pithos_permissions p
                       WHERE p.member = ANY(%s)
                         AND (p.path = n.path
                              OR left(n.path, length(p.path) + 1) = p.path || '/')))
            ORDER BY n.path""",
        (NORMAL, domain, key, lo, successor(lo), sorted(set(entries))))
    return [(row[0], _version(row[1:])) for row in txn.fetchall()]


def expiring_txn(txn: Any, until: str, after: tuple[str, int] | None, since: str | None,
                 limit: int, under: str | None = None) -> list[tuple[str, int, str]]:
    """``(path, serial, X-Delete-At)`` of the current objects whose
    ``X-Delete-At`` (ten digits, as ``snfd.pithos.expiry`` stores it) is
    at most ``until`` and above ``since`` (``None``: any), ordered by it
    and the serial, strictly after ``after`` (a previous page's last
    ``(X-Delete-At, serial)``); ``under``: only paths starting with it."""
    where = ["a.domain = %s", "a.key = %s", "a.value COLLATE \"C\" <= %s"]
    args: list[Any] = [DOMAIN, DELETE_AT, until]
    if under is not None:
        where.append("starts_with(n.path, %s)")
        args.append(under)
    if since is not None:
        where.append("a.value COLLATE \"C\" > %s")
        args.append(since)
    if after is not None:
        where.append("(a.value COLLATE \"C\", a.serial) > (%s, %s)")
        args.extend(after)
    txn.execute(
        f"""SELECT n.path, v.serial, a.value FROM pithos_attributes a
            JOIN pithos_versions v ON v.serial = a.serial AND v.cluster = {NORMAL}
            JOIN pithos_nodes n ON n.latest_version = v.serial
            WHERE {' AND '.join(where)}
            ORDER BY a.value COLLATE "C", a.serial LIMIT %s""", [*args, limit])
    return [(row[0], int(row[1]), row[2]) for row in txn.fetchall()]


def recluster_txn(txn: Any, serial: int, cluster: int) -> None:
    prepared.execute(txn, "UPDATE pithos_versions SET cluster = %s WHERE serial = %s",
                     (cluster, serial))


def set_checksum_txn(txn: Any, serial: int, checksum: str) -> bool:
    txn.execute("UPDATE pithos_versions SET checksum = %s WHERE serial = %s",
                (checksum, serial))
    return bool(txn.rowcount)


def delete_versions_txn(txn: Any, versions: Sequence[Version]) -> None:
    """Remove versions, the maps only they used, and the nodes left with
    no version; nodes keep pointing at their newest remaining version."""
    if not versions:
        return
    serials = sorted({v.serial for v in versions})
    nodes = sorted({v.node for v in versions})
    txn.execute("DELETE FROM pithos_versions WHERE serial = ANY(%s)", (serials,))
    release_maps_txn(txn, (v.map_id for v in versions))
    txn.execute(
        """UPDATE pithos_nodes n SET latest_version =
               (SELECT max(serial) FROM pithos_versions v WHERE v.node = n.node)
           WHERE n.node = ANY(%s)""", (nodes,))
    txn.execute(
        """DELETE FROM pithos_nodes n WHERE n.node = ANY(%s) AND n.latest_version IS NULL
           RETURNING path""", (nodes,))
    gone = [row[0] for row in txn.fetchall()]
    if gone:
        forget_paths_txn(txn, gone)


def purgeable_txn(txn: Any, *, node: int | None = None, parent: int | None = None,
                  until: float | None = None,
                  clusters: Sequence[int] = (NORMAL, HISTORY, DELETED)) -> list[Version]:
    """Versions of one node (or of the children of ``parent``) in
    ``clusters`` with mtime <= ``until`` (``None``: any), for purging."""
    where = ["v.cluster = ANY(%s)"]
    args: list[Any] = [list(clusters)]
    if node is not None:
        where.append("v.node = %s")
        args.append(node)
    if parent is not None:
        where.append("v.node IN (SELECT node FROM pithos_nodes WHERE parent = %s)")
        args.append(parent)
    if until is not None:
        where.append("v.mtime <= %s")
        args.append(until)
    txn.execute(f"SELECT {_VERSION} FROM pithos_versions v WHERE {' AND '.join(where)}"
                " ORDER BY v.serial", args)
    return [_version(row) for row in txn.fetchall()]


def delete_container_txn(txn: Any, container: int, path: str) -> None:
    """Remove a container with everything in it (versions of every
    cluster, maps only they used, sharing and links beneath it)."""
    txn.execute(
        """DELETE FROM pithos_versions v USING pithos_nodes n
           WHERE v.node = n.node AND n.parent = %s RETURNING v.map_id""", (container,))
    maps = [row[0] for row in txn.fetchall()]
    release_maps_txn(txn, maps)
    txn.execute("DELETE FROM pithos_nodes WHERE parent = %s", (container,))
    lo, hi = path + "/", successor(path + "/")
    txn.execute("DELETE FROM pithos_permissions WHERE path = %s OR (path >= %s AND path < %s)",
                (path, lo, hi))
    txn.execute("DELETE FROM pithos_public WHERE path >= %s AND path < %s", (lo, hi))
    txn.execute("DELETE FROM pithos_nodes WHERE node = %s", (container,))


# -- listings -----------------------------------------------------------------

def _bounds(where: list[str], args: list[Any], lo: str | None, hi: str | None,
            after: str | None, before: str | None) -> None:
    for value, op in ((lo, ">="), (hi, "<"), (after, ">"), (before, "<")):
        if value is not None:
            where.append(f"n.path {op} %s")
            args.append(value)


def object_rows_txn(txn: Any, container: int, *, lo: str | None = None,
                    hi: str | None = None, after: str | None = None,
                    before: str | None = None, reverse: bool = False, limit: int,
                    until: float | None = None, filters: Sequence[MetaFilter] = (),
                    exact: Sequence[str] | None = None,
                    prefixes: Sequence[str] = (), public_only: bool = False,
                    expired_at: str | None = None) -> list[tuple[str, Version]]:
    """A page of a container's objects as ``(path, version)``, by path.

    ``lo``..``hi`` (inclusive, exclusive) and ``after``/``before``
    (exclusive) bound the paths; ``until`` lists each object as it was then
    (its newest version by then unless that is a deletion marker), else its
    current version.  ``exact``/``prefixes``, when ``exact`` is not
    ``None``, keep only those paths and the paths under those prefixes.
    ``expired_at`` (ten digits of epoch seconds): leave out the objects
    whose ``X-Delete-At`` has come by then (``snfd.pithos.expiry``).
    """
    where = ["n.parent = %s"]
    args: list[Any] = [container]
    _bounds(where, args, lo, hi, after, before)
    if until is None:
        join = "JOIN pithos_versions v ON v.serial = n.latest_version"
        where.append("v.cluster = 0")
        join_args: list[Any] = []
    else:
        join = f"""JOIN LATERAL (SELECT {_VERSION.replace('v.', 'w.')}
                                 FROM pithos_versions w
                                 WHERE w.node = n.node AND w.mtime <= %s
                                 ORDER BY w.mtime DESC, w.serial DESC LIMIT 1) v ON true"""
        join_args = [until]
        where.append("v.cluster <> 2")
    for f in filters:
        if f.op == "has":
            where.append("EXISTS (SELECT 1 FROM pithos_attributes a WHERE a.serial = v.serial"
                         " AND a.domain = 'pithos' AND a.key = %s)")
            args.append(f.key)
        elif f.op == "not":
            where.append("NOT EXISTS (SELECT 1 FROM pithos_attributes a"
                         " WHERE a.serial = v.serial AND a.domain = 'pithos' AND a.key = %s)")
            args.append(f.key)
        else:
            where.append("EXISTS (SELECT 1 FROM pithos_attributes a WHERE a.serial = v.serial"
                         " AND a.domain = 'pithos' AND a.key = %s"
                         f" AND a.value COLLATE \"C\" {_OPS[f.op]} %s)")
            args.extend([f.key, f.value])
    if exact is not None:
        alternatives = ["n.path = ANY(%s)"]
        args.append(list(exact))
        for p in prefixes:
            nxt = successor(p)
            if nxt is None:
                alternatives.append("n.path >= %s")
                args.append(p)
            else:
                alternatives.append("(n.path >= %s AND n.path < %s)")
                args.extend([p, nxt])
        where.append("(" + " OR ".join(alternatives) + ")")
    if public_only:
        where.append("EXISTS (SELECT 1 FROM pithos_public p WHERE p.path = n.path)")
    if expired_at is not None:
        where.append("NOT EXISTS (SELECT 1 FROM pithos_attributes x WHERE x.serial = v.serial"
                     " AND x.domain = %s AND x.key = %s AND x.value COLLATE \"C\" <= %s)")
        args.extend([DOMAIN, DELETE_AT, expired_at])
    order = "DESC" if reverse else "ASC"
    txn.execute(
        f"""SELECT n.path, {_VERSION} FROM pithos_nodes n {join}
            WHERE {' AND '.join(where)} ORDER BY n.path {order} LIMIT %s""",
        [*join_args, *args, limit])
    return [(row[0], _version(row[1:])) for row in txn.fetchall()]


def container_rows_txn(txn: Any, account: int, *, lo: str | None = None,
                       hi: str | None = None, after: str | None = None,
                       before: str | None = None, reverse: bool = False, limit: int,
                       only: Sequence[str] | None = None) -> list[ContainerRow]:
    """A page of an account's containers (paths bounded as in
    ``object_rows_txn``; ``only``: just these paths)."""
    where = ["n.parent = %s"]
    args: list[Any] = [account]
    _bounds(where, args, lo, hi, after, before)
    if only is not None:
        where.append("n.path = ANY(%s)")
        args.append(list(only))
    order = "DESC" if reverse else "ASC"
    txn.execute(
        f"""SELECT n.node, n.path, s.population, s.size, s.mtime FROM pithos_nodes n
            LEFT JOIN pithos_statistics s ON s.node = n.node AND s.cluster = 0
            WHERE {' AND '.join(where)} ORDER BY n.path {order} LIMIT %s""",
        [*args, limit])
    return [ContainerRow(int(node), path.split("/", 1)[1],
                         Stats(int(pop or 0), int(size or 0), float(mtime or 0.0)))
            for node, path, pop, size, mtime in txn.fetchall()]


# -- permissions and groups ---------------------------------------------------

def _permissions(rows: Iterable[Sequence[Any]]) -> dict[str, Permissions]:
    collected: dict[str, tuple[list[str], list[str]]] = {}
    for path, access, member in rows:
        read, write = collected.setdefault(path, ([], []))
        (write if access == WRITE else read).append(member)
    return {p: Permissions(tuple(sorted(r)), tuple(sorted(w)))
            for p, (r, w) in collected.items()}


@attrs.frozen
class OwnedContainer:
    """What the owner's view of a container is read from, in one query
    (``owned_container_txn``)."""

    node: int
    stats: Stats
    policy: dict[str, str]
    meta: dict[str, str]
    meta_keys: list[str]
    sharing: Permissions | None


# A container's settings: its policy, metadata and own sharing, as arrays
# of its node ``n`` (``container_settings_txn``, ``owned_container_txn``).
_SETTINGS = """ARRAY(SELECT ARRAY[p.key, p.value] FROM pithos_policy p
                    WHERE p.node = n.node),
              ARRAY(SELECT ARRAY[m.key, m.value] FROM pithos_node_meta m
                    WHERE m.node = n.node),
              ARRAY(SELECT ARRAY[q.access::text, q.member] FROM pithos_permissions q
                    WHERE q.path = n.path)"""


def _settings(path: str, policy: Any, meta: Any, perms: Any
              ) -> tuple[dict[str, str], dict[str, str], Permissions | None]:
    """The ``_SETTINGS`` arrays as policy, metadata and sharing."""
    sharing = _permissions((path, int(access), member) for access, member in perms)
    return dict(map(tuple, policy)), dict(map(tuple, meta)), sharing.get(path)


_OWNED_CONTAINER = (
    f"""SELECT n.node, s.population, s.size, s.mtime, {_SETTINGS},
              ARRAY(SELECT k.key FROM pithos_meta_keys k
                    WHERE k.container = n.node ORDER BY k.key)
       FROM pithos_nodes n
       LEFT JOIN pithos_statistics s ON s.node = n.node AND s.cluster = %(normal)s
       WHERE n.path = %(path)s""")


def owned_container_txn(txn: Any, path: str) -> OwnedContainer | None:
    """The container at ``path`` with its current statistics, policy,
    metadata, the attribute keys its objects use (sorted) and its own
    sharing: what ``node_txn``, ``stats_txn``, ``policy_txn``,
    ``node_meta_txn``, ``meta_keys_txn`` and ``permissions_txn`` give, in
    one round trip; ``None`` when there is no such node."""
    prepared.execute(txn, _OWNED_CONTAINER, {"normal": NORMAL, "path": path})
    row = txn.fetchone()
    if row is None:
        return None
    node, population, size, mtime, policy, meta, perms, keys = row
    stats = Stats() if population is None else Stats(int(population), int(size), float(mtime))
    policy, meta, sharing = _settings(path, policy, meta, perms)
    return OwnedContainer(int(node), stats, policy, meta, list(keys), sharing)


_CONTAINER_SETTINGS = f"SELECT n.node, {_SETTINGS} FROM pithos_nodes n WHERE n.path = %(path)s"


def container_settings_txn(
        txn: Any, path: str,
) -> tuple[int, dict[str, str], dict[str, str], Permissions | None] | None:
    """``(node, policy, metadata, own sharing)`` of the container at
    ``path``, in one round trip, without its statistics; ``None`` when
    there is no such node.  What those rows are changes is told on
    ``CONTAINERS_CHANNEL`` (the triggers of ``0007_container_notify.sql``)."""
    prepared.execute(txn, _CONTAINER_SETTINGS, {"path": path})
    row = txn.fetchone()
    if row is None:
        return None
    return (int(row[0]), *_settings(path, *row[1:]))


CONTAINERS_CHANNEL = "pithos_containers"
"""The NOTIFY channel on which every change of a container's node, policy,
metadata or own sharing is told, its payload the container's path (sent
by the triggers of ``0007_container_notify.sql``, whoever writes)."""


def permissions_txn(txn: Any, paths: Sequence[str]) -> dict[str, Permissions]:
    """The sharing of those of ``paths`` that have any."""
    if not paths:
        return {}
    txn.execute("SELECT path, access, member FROM pithos_permissions WHERE path = ANY(%s)",
                (list(paths),))
    return _permissions(txn.fetchall())


def permissions_under_txn(txn: Any, prefix: str,
                          members: Sequence[str] | None = None) -> dict[str, Permissions]:
    """The sharing of every path starting with ``prefix``; with
    ``members``, only entries naming one of them."""
    where = ["path >= %s"]
    args: list[Any] = [prefix]
    nxt = successor(prefix)
    if nxt is not None:
        where.append("path < %s")
        args.append(nxt)
    if members is not None:
        where.append("member = ANY(%s)")
        args.append(list(members))
    txn.execute(f"SELECT path, access, member FROM pithos_permissions"
                f" WHERE {' AND '.join(where)}", args)
    return _permissions(txn.fetchall())


def set_permissions_txn(txn: Any, path: str, permissions: Permissions) -> None:
    """Make ``permissions`` the sharing of ``path`` (empty: none)."""
    clear_permissions_txn(txn, [path])
    rows = sorted({(path, READ, m) for m in permissions.read}
                  | {(path, WRITE, m) for m in permissions.write})
    for row in rows:
        txn.execute("INSERT INTO pithos_permissions (path, access, member)"
                    " VALUES (%s, %s, %s)", row)


def forget_paths_txn(txn: Any, paths: Sequence[str]) -> None:
    """``clear_permissions_txn`` and ``unpublish_txn`` of ``paths`` (objects
    gone), in one statement."""
    if paths:
        prepared.execute(txn,
            """WITH shared AS (DELETE FROM pithos_permissions WHERE path = ANY(%(paths)s))
               DELETE FROM pithos_public WHERE path = ANY(%(paths)s)""",
            {"paths": list(paths)})


def clear_permissions_txn(txn: Any, paths: Sequence[str]) -> None:
    if paths:
        prepared.execute(txn, "DELETE FROM pithos_permissions WHERE path = ANY(%s)", (list(paths),))


def memberships_txn(txn: Any, user: str) -> list[str]:
    """The ``<owner>:<group>`` entries naming groups ``user`` belongs to."""
    txn.execute("SELECT owner || ':' || name FROM pithos_groups WHERE member = %s",
                (user,))
    return [row[0] for row in txn.fetchall()]


def sharers_txn(txn: Any, user: str, members: Sequence[str], marker: str | None,
                limit: int) -> list[tuple[str, float]]:
    """Accounts other than ``user`` holding a sharing entry naming one of
    ``members``: ``[(account, last change)]`` ascending after ``marker``."""
    txn.execute(
        """SELECT a.account, coalesce(GREATEST(s.mtime, (
                   SELECT max(cs.mtime) FROM pithos_nodes c
                   JOIN pithos_statistics cs ON cs.node = c.node AND cs.cluster = 0
                   WHERE c.parent = n.node)), 0)
           FROM (
               SELECT DISTINCT split_part(path, '/', 1) COLLATE "C" AS account
               FROM pithos_permissions WHERE member = ANY(%s)) a
           LEFT JOIN pithos_nodes n ON n.path = a.account
           LEFT JOIN pithos_statistics s ON s.node = n.node AND s.cluster = 0
           WHERE a.account <> %s AND a.account > %s
           ORDER BY a.account LIMIT %s""",
        (list(members), user, marker or "", limit))
    return [(row[0], float(row[1])) for row in txn.fetchall()]


def groups_txn(txn: Any, owner: str) -> dict[str, tuple[str, ...]]:
    txn.execute("SELECT name, member FROM pithos_groups WHERE owner = %s"
                " ORDER BY name, member", (owner,))
    out: dict[str, list[str]] = {}
    for name, member in txn.fetchall():
        out.setdefault(name, []).append(member)
    return {k: tuple(v) for k, v in out.items()}


def set_groups_txn(txn: Any, owner: str, groups: Mapping[str, Sequence[str]]) -> None:
    """Make ``groups`` (name -> members) the owner's groups."""
    txn.execute("DELETE FROM pithos_groups WHERE owner = %s", (owner,))
    for name, members in sorted(groups.items()):
        for member in sorted(set(members)):
            txn.execute("INSERT INTO pithos_groups (owner, name, member) VALUES (%s, %s, %s)",
                        (owner, name, member))


# -- public links -------------------------------------------------------------

def public_tokens_txn(txn: Any, paths: Sequence[str]) -> dict[str, str]:
    """``{path: token}`` of the active links among ``paths``."""
    if not paths:
        return {}
    txn.execute("SELECT path, token FROM pithos_public WHERE active AND path = ANY(%s)",
                (list(paths),))
    return dict(txn.fetchall())


def publish_txn(txn: Any, path: str, token: str) -> bool:
    """Give ``path`` the link ``token``; false if that token is taken."""
    txn.execute(
        """INSERT INTO pithos_public (token, path) VALUES (%s, %s)
           ON CONFLICT DO NOTHING""", (token, path))
    return bool(txn.rowcount)


def unpublish_txn(txn: Any, paths: Sequence[str]) -> None:
    if paths:
        prepared.execute(txn, "DELETE FROM pithos_public WHERE path = ANY(%s)", (list(paths),))


def public_path_txn(txn: Any, token: str) -> str | None:
    txn.execute("SELECT path FROM pithos_public WHERE token = %s AND active", (token,))
    row = txn.fetchone()
    return None if row is None else str(row[0])


def public_containers_txn(txn: Any, account: str) -> list[str]:
    """Names of the account's containers holding public objects."""
    lo = account + "/"
    txn.execute(
        """SELECT DISTINCT split_part(substr(path, %s), '/', 1) FROM pithos_public
           WHERE path >= %s AND path < %s""", (len(lo) + 1, lo, successor(lo)))
    return [row[0] for row in txn.fetchall()]
