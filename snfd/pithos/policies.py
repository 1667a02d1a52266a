"""Storage policies (Swift's ``X-Storage-Policy``): named block stores a
container is placed in when it is created, for good.

Each policy has a name, optional aliases and its own ``IBlockStore`` (a
filesystem directory).  The first policy listed is *policy 0*: containers
made before storage policies existed have no policy stored and belong to
it, and its store is the node's ``IBlockStore`` (images and volumes use
it).  One policy is the *default*: new containers without
``X-Storage-Policy`` go there.  Names and aliases are matched without
regard to case, as Swift does.

A container's policy is kept with its other policy keys (``POLICY_KEY``
in the container policy table, the canonical name at creation).  The
blocks of every version are in its container's store (checked inside
the transaction that makes it, see ``snfd.pithos.gc.check_blocks_txn``);
a writer that stored them elsewhere (a copy across policies, an upload
through another path) has the missing ones copied over (``bring``)
before the transaction is tried again.  Reads go through ``view()``,
which finds a block in any policy's store (blocks are named by their
content, so any copy is the block).

Configuration (``[pithos]``): ``storage_policies`` lists
``name[|alias...][:directory]`` entries; ``storage_policy_default`` names
the default (empty: the first).  Without them the node serves
``default`` (the ``block_path`` directory) and ``silver``
(``<state_dir>/blocks-silver``).

A policy whose blocks are being moved to another store (from a
filesystem to Ceph: ``snf-manage pithos-migrate-blocks``, and
docs/operations.md) keeps the store they come from as a read-only
fallback (``block_fallback``, ``FallbackBlocks``): reads that miss in
its store read there, nothing else touches it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from snfd import errors
from snfd.config import ConfigError
from snfd.interfaces import IBlockFallback
from snfd.pithos.hashmap import EMPTY_HASH
from snfd.pithos.store import STORAGE_POLICY

log = Logger(namespace="snfd.pithos.policies")

POLICY_KEY = STORAGE_POLICY
"""The container policy key holding the container's storage policy."""
HEADER = "X-Storage-Policy"
DEFAULT_POLICIES = "default, silver"
"""What a node serves when ``storage_policies`` is not set."""
_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@attrs.frozen
class PolicySpec:
    """One ``storage_policies`` entry as configured: ``directory`` empty
    means the default place (see ``StoragePolicies.from_config``)."""

    name: str
    aliases: tuple[str, ...] = ()
    directory: str = ""


def parse_policies(value: str) -> tuple[PolicySpec, ...]:
    """The ``[pithos] storage_policies`` value: comma- or
    whitespace-separated ``name[|alias...][:directory]`` entries (names of
    letters, digits and ``-``; no name twice, aliases included).  Empty:
    the built-in ``DEFAULT_POLICIES``."""
    entries = [e for e in value.replace(",", " ").split() if e] or DEFAULT_POLICIES.replace(
        ",", " ").split()
    out: list[PolicySpec] = []
    seen: set[str] = set()
    for entry in entries:
        names_part, _, directory = entry.partition(":")
        names = [n for n in names_part.split("|")]
        for n in names:
            if not _NAME.match(n):
                raise ValueError(f"{n!r} is not a policy name (letters, digits and -)")
            if n.lower() in seen:
                raise ValueError(f"the policy name {n!r} is given twice")
            seen.add(n.lower())
        out.append(PolicySpec(names[0], tuple(names[1:]), directory.strip()))
    return tuple(out)


def parse_fallbacks(value: str) -> tuple[tuple[str, str], ...]:
    """The ``[pithos] block_fallback`` value: comma- or whitespace-separated
    entries, ``directory`` (policy 0's fallback; once) or
    ``policy:directory``; ``(policy name, directory)`` pairs, the name
    ``""`` for policy 0.  Empty: no fallback.  Whether the names are
    policies is checked against ``storage_policies`` when the stores are
    made (``StoragePolicies.from_config``)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in value.replace(",", " ").split():
        name, sep, directory = entry.partition(":")
        if not sep or name.startswith(("/", ".", "~")) or not _NAME.match(name):
            name, directory = "", entry
        if not directory:
            raise ValueError(f"{entry!r} names no directory")
        if name.lower() in seen:
            raise ValueError("policy 0's fallback is given twice" if not name
                             else f"the fallback of {name!r} is given twice")
        seen.add(name.lower())
        out.append((name, directory))
    return tuple(out)


@attrs.frozen
class StoragePolicy:
    """A named block store."""

    name: str
    blocks: Any
    aliases: tuple[str, ...] = ()
    default: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The name, then the aliases."""
        return (self.name, *self.aliases)


class StoragePolicies:
    """The node's storage policies, policy 0 first (see the module
    docstring).

    @param policies: at least one; all stores of one block size.
    @param default: the name of the default policy (``None``: the first).
    @raise ValueError: no policy, a name twice, an unknown default or
        stores of different block sizes.
    """

    def __init__(self, policies: Sequence[StoragePolicy], default: str | None = None):
        if not policies:
            raise ValueError("at least one storage policy is needed")
        by_name: dict[str, StoragePolicy] = {}
        for p in policies:
            for n in p.names:
                if n.lower() in by_name:
                    raise ValueError(f"the policy name {n!r} is given twice")
                by_name[n.lower()] = p
        chosen = by_name.get((default or policies[0].name).lower())
        if chosen is None:
            raise ValueError(f"no storage policy is named {default!r}")
        if len({int(getattr(p.blocks, "block_size", 0)) for p in policies}) != 1:
            raise ValueError("every storage policy needs the same block size")
        self._policies = [attrs.evolve(p, default=p is chosen) for p in policies]
        self._by_name = {n.lower(): q for q in self._policies for n in q.names}
        self.primary = self._policies[0]
        self.default = self._by_name[chosen.name.lower()]

    @classmethod
    def single(cls, blocks: Any, name: str = "default") -> StoragePolicies:
        """One policy over ``blocks`` (a node or a test without policies)."""
        return cls([StoragePolicy(name, blocks)])

    @classmethod
    def from_config(cls, section: Any, make_store: Callable[[str], Any],
                    place: Callable[[PolicySpec, int], str],
                    open_fallback: Callable[[str, str], Any] | None = None,
                    ) -> StoragePolicies:
        """The policies of a ``[pithos]`` section: ``place(spec, index)``
        says where each policy's blocks are (``file_places``,
        ``rados_places``) and ``make_store(place)`` builds its store.  A
        policy that ``block_fallback`` names gets ``FallbackBlocks`` over
        its store and ``open_fallback(directory, place)``.

        @raise ConfigError: the default names no policy, two policies
            share a place, or ``block_fallback`` names no policy (or
            ``open_fallback`` refuses its directory).
        """
        specs: tuple[PolicySpec, ...] = section.storage_policies
        places: dict[str, str] = {}
        policies = []
        for i, spec in enumerate(specs):
            where = place(spec, i)
            if where in places:
                raise ConfigError("config", "pithos", "storage_policies",
                                  f"{places[where]} and {spec.name} share {where!r}")
            places[where] = spec.name
            policies.append((spec, where))
        default = section.storage_policy_default or None
        names = {n.lower() for spec in specs for n in (spec.name, *spec.aliases)}
        if default is not None and default.lower() not in names:
            raise ConfigError("config", "pithos", "storage_policy_default",
                              f"no storage policy is named {default!r}"
                              f" (policies: {', '.join(s.name for s in specs)})")
        fallbacks: dict[int, str] = {}
        for name, directory in getattr(section, "block_fallback", ()):
            index = next((i for i, spec in enumerate(specs)
                          if name.lower() in {n.lower() for n in (spec.name, *spec.aliases)}),
                         None) if name else 0
            if index is None:
                raise ConfigError("config", "pithos", "block_fallback",
                                  f"no storage policy is named {name!r}"
                                  f" (policies: {', '.join(s.name for s in specs)})")
            if index in fallbacks:
                raise ConfigError("config", "pithos", "block_fallback",
                                  f"{specs[index].name} has two fallbacks")
            fallbacks[index] = directory
        if fallbacks and open_fallback is None:
            raise ConfigError("config", "pithos", "block_fallback",
                              "this store cannot have a fallback")
        made = []
        for i, (spec, where) in enumerate(policies):
            blocks = make_store(where)
            if i in fallbacks:
                assert open_fallback is not None
                blocks = FallbackBlocks(blocks, open_fallback(fallbacks[i], where))
            made.append(StoragePolicy(spec.name, blocks, spec.aliases))
        return cls(made, default)

    def __iter__(self) -> Iterator[StoragePolicy]:
        return iter(self._policies)

    def __len__(self) -> int:
        return len(self._policies)

    @property
    def block_size(self) -> int:
        return int(self.primary.blocks.block_size)

    @property
    def has_fallbacks(self) -> bool:
        """Whether a policy's store has a fallback (``FallbackBlocks``)."""
        return any(isinstance(p.blocks, FallbackBlocks) for p in self._policies)

    def find(self, name: str) -> StoragePolicy | None:
        """The policy called ``name`` (or so aliased), any case."""
        return self._by_name.get(name.strip().lower())

    def chosen(self, header: str | None) -> StoragePolicy | None:
        """The policy an ``X-Storage-Policy`` header asks for (``None``: not
        given or empty).  @raise errors.BadRequest: no such policy."""
        if header is None or not header.strip():
            return None
        found = self.find(header)
        if found is None:
            raise errors.BadRequest(f"Invalid {HEADER} {header.strip()!r}")
        return found

    def of(self, stored: str | None) -> StoragePolicy:
        """The policy of a container whose ``POLICY_KEY`` is ``stored``
        (absent or empty: policy 0).
        @raise errors.ServiceUnavailable: a policy this node no longer
            has (its configuration dropped it)."""
        if not stored:
            return self.primary
        found = self.find(stored)
        if found is None:
            raise errors.ServiceUnavailable(
                f"The container's storage policy {stored!r} is not configured here.")
        return found

    def store_of(self, policy: Mapping[str, str]) -> Any:
        """The block store of a container with the stored ``policy`` keys."""
        return self.of(policy.get(POLICY_KEY)).blocks

    def info(self) -> list[dict[str, Any]]:
        """The ``policies`` list of Swift's ``GET /info``."""
        out: list[dict[str, Any]] = []
        for p in self._policies:
            entry: dict[str, Any] = {"name": p.name, "aliases": ", ".join(p.names)}
            if p.default:
                entry["default"] = True
            out.append(entry)
        return out

    def usage(self, by_stored: Mapping[str, tuple[int, int, int]],
              ) -> dict[str, tuple[int, int, int]]:
        """Per-policy ``(containers, objects, bytes)`` from the same sums by
        stored ``POLICY_KEY`` value (``""``: none stored), by policy name;
        values of unknown policies are kept under their stored name."""
        out: dict[str, tuple[int, int, int]] = {}
        for stored, (c, o, b) in by_stored.items():
            found = self.find(stored) if stored else self.primary
            name = found.name if found is not None else stored
            pc, po, pb = out.get(name, (0, 0, 0))
            out[name] = (pc + c, po + o, pb + b)
        return out

    def view(self) -> PolicyBlocks:
        """The stores as one, for reads (see ``PolicyBlocks``)."""
        return PolicyBlocks(self)

    async def bring(self, hashes: Iterable[str], into: Any) -> bool:
        """Copy the blocks ``hashes`` that ``into`` lacks from its fallback
        and from the other policies' stores (theirs included); whether
        every one is there now."""
        wanted = [h for h in dict.fromkeys(hashes) if h != EMPTY_HASH]
        if not wanted:
            return True
        lacking = list(await into.missing(wanted))
        if lacking and isinstance(into, FallbackBlocks):
            lacking = await into.bring(lacking)
        for p in self._policies:
            if not lacking:
                break
            if p.blocks is into:
                continue
            found = set(await holding(p.blocks, lacking))
            for h in lacking:
                if h in found:
                    block = await p.blocks.get_stored(h)
                    await _put_named(into, h, block)
            lacking = [h for h in lacking if h not in found]
        return not lacking

    async def lacking(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` no policy's store holds, fallbacks included
        (in the order given, once each); those held are refreshed in the
        store holding them, but never in a fallback."""
        return list(await self.view().missing(names))


def file_places(section: Any, state_dir: Path) -> Callable[[PolicySpec, int], str]:
    """Where the filesystem store keeps each policy's blocks: policy 0
    without a directory on ``block_path`` (else ``<state_dir>/blocks``),
    any other on ``<state_dir>/blocks-<name>``; relative directories are
    below ``state_dir``."""
    def place(spec: PolicySpec, index: int) -> str:
        if spec.directory:
            where = state_dir / Path(spec.directory).expanduser()
        elif index == 0:
            where = Path(section.block_path) if section.block_path else state_dir / "blocks"
        else:
            where = state_dir / f"blocks-{spec.name}"
        return os.path.abspath(where)
    return place


def rados_places(section: Any) -> Callable[[PolicySpec, int], str]:
    """Where the RADOS store keeps each policy's blocks: a namespace of
    ``rados_pool``, the entry's "directory" if given, else
    ``rados_namespace`` for policy 0 and ``blocks-<name>`` for the others."""
    def place(spec: PolicySpec, index: int) -> str:
        if spec.directory:
            return spec.directory
        return section.rados_namespace if index == 0 else f"blocks-{spec.name}"
    return place


async def holding(store: Any, names: list[str]) -> list[str]:
    """Those of ``names`` that ``store`` can read: what its ``missing``
    does not name (refreshed), and for ``FallbackBlocks`` those in its
    fallback too."""
    held = getattr(store, "holding", None)
    if held is not None:
        found: list[str] = await held(names)
        return found
    absent = set(await store.missing(names))
    return [n for n in names if n not in absent]


async def _put_named(store: Any, name: str, block: bytes) -> None:
    """Store a block read back (padded or not): under its known name when
    the store allows it (no hashing), else by content (trailing zeros are
    not part of the name, so the same name results)."""
    put_hashed = getattr(store, "put_hashed", None)
    if put_hashed is not None:
        await put_hashed([(name, block.rstrip(b"\x00"))])
    else:
        await store.put([block.rstrip(b"\x00")])


class PolicyBlocks:
    """Every policy's store seen as one, for the paths that read blocks
    without knowing the container they came from (large object segments,
    MD5s, partial updates, public links): ``get`` finds a block in any
    store (the default policy's first), ``missing`` names blocks no
    store has, nor its fallback (``holding``), ``put`` writes to policy 0
    (a version made from them has its missing blocks brought into its
    container's store).  Not the node's ``IBlockStore``: it neither scans
    nor deletes."""

    def __init__(self, policies: StoragePolicies):
        self.policies = policies
        order = [policies.default, *(p for p in policies if p is not policies.default)]
        self._stores = [p.blocks for p in order]
        self.block_size = policies.block_size

    def put(self, blocks: Iterable[Any]) -> Any:
        return self.policies.primary.blocks.put(blocks)

    def get(self, name: str) -> Any:
        return defer.ensureDeferred(self._get(name))

    async def _get(self, name: str, length: int | None = None) -> bytes:
        for store in self._stores[:-1]:
            try:
                block: bytes = await (store.get(name) if length is None
                                      else store.read(name, length))
                return block
            except KeyError:
                continue
        last = self._stores[-1]
        found: bytes = await (last.get(name) if length is None else last.read(name, length))
        return found

    def read(self, name: str, length: int) -> Any:
        return defer.ensureDeferred(self._get(name, length))

    def missing(self, names: Iterable[str]) -> Any:
        return defer.ensureDeferred(self._missing(list(names)))

    async def _missing(self, names: list[str]) -> list[str]:
        lacking = list(dict.fromkeys(names))
        for store in self._stores:
            if not lacking:
                break
            held = set(await holding(store, lacking))
            lacking = [n for n in lacking if n not in held]
        return lacking


@implementer(IBlockFallback)
class FallbackBlocks:
    """A policy's block store with the store its blocks are being moved
    from as a read-only fallback (``[pithos] block_fallback``; the
    procedure is in docs/operations.md, "Moving blocks from a filesystem
    to Ceph").

    ``get`` and ``read`` of a block ``primary`` lacks read it from
    ``fallback``; everything else is ``primary``'s alone.  ``missing``
    names the blocks ``primary`` lacks, fallback or not, so that writers
    store them there (uploads send them again, volumes and the garbage
    collection's protocol see the primary alone); ``scan`` lists and
    ``delete`` removes only ``primary``'s blocks: no collection ever
    deletes from the fallback, and a block only there is nothing to it.
    A version that references a block only in the fallback reads it
    there; a new one has it copied to ``primary`` first (``bring``, via
    ``StoragePolicies.bring``), and so has a volume's clone of an image
    (``IBlockFallback``).  Nothing is written to the fallback (its
    filesystem may be read-only).

    @param primary: the policy's ``IBlockStore``.
    @param fallback: a ``FileBlockStore`` (what ``present`` needs).
    """

    def __init__(self, primary: Any, fallback: Any):
        self.primary = primary
        self.fallback = fallback
        self.block_size = primary.block_size
        self.scan_resumable = primary.scan_resumable
        self.fallback_reads = 0
        """How many reads the fallback answered (since the start)."""

    # -- IBlockStore: the primary's, but for reads ---------------------------

    def put(self, blocks: Iterable[Any]) -> Any:
        return self.primary.put(blocks)

    def put_hashed(self, pairs: Iterable[tuple[str, Any]]) -> Any:
        return self.primary.put_hashed(pairs)

    def get(self, name: str) -> Any:
        return defer.ensureDeferred(self._read(name, None))

    def read(self, name: str, length: int) -> Any:
        return defer.ensureDeferred(self._read(name, length))

    async def _read(self, name: str, length: int | None) -> bytes:
        try:
            block: bytes = await (self.primary.get(name) if length is None
                                  else self.primary.read(name, length))
            return block
        except KeyError:
            pass
        if length is None:
            length = self.block_size
        block = await self.fallback.read(name, length)
        self.fallback_reads += 1
        return block

    def get_stored(self, name: str) -> Any:
        return defer.ensureDeferred(self._stored(name))

    async def _stored(self, name: str) -> bytes:
        try:
            block: bytes = await self.primary.get_stored(name)
            return block
        except KeyError:
            pass
        block = await self.fallback.get_stored(name)
        self.fallback_reads += 1
        return block

    def missing(self, names: Iterable[str]) -> Any:
        return self.primary.missing(names)

    def missing_now(self, names: Iterable[str]) -> list[str]:
        """The primary's ``missing_now`` (inside a transaction)."""
        found: list[str] = self.primary.missing_now(names)
        return found

    def delete(self, names: Iterable[str], older_than: float) -> Any:
        return self.primary.delete(names, older_than)

    def scan(self, cursor: str, limit: int) -> Any:
        return self.primary.scan(cursor, limit)

    def sweep_temporary(self, older_than: float) -> Any:
        return self.primary.sweep_temporary(older_than)

    # -- the fallback -------------------------------------------------------

    async def holding(self, names: list[str]) -> list[str]:
        """Those of ``names`` in the primary (refreshed) or the fallback
        (looked up, not refreshed), in order."""
        absent = set(await self.primary.missing(names))
        elsewhere = set(await self.fallback.present([n for n in names if n in absent]))
        return [n for n in names if n not in absent or n in elsewhere]

    async def bring(self, names: Iterable[str]) -> list[str]:
        """Copy those of ``names`` only in the fallback to the primary, by
        content (a fallback block whose bytes do not match its name is not
        brought, and the log says so); those still lacking after."""
        left: list[str] = []
        for name in await self.primary.missing(names):
            try:
                block = await self.fallback.get_stored(name)
            except KeyError:
                left.append(name)
                continue
            [stored] = await self.primary.put([block])
            if stored != name:
                log.error("block {name} in the fallback {where} does not match its name"
                          " (its content is {stored}): not brought", name=name,
                          where=getattr(self.fallback, "path", "?"), stored=stored)
                left.append(name)
        return left


class Placement:
    """Where the blocks of one upload go, settled once its container is
    known (the upload's gate): until ``settle``, policy 0's store."""

    def __init__(self, blocks: Any):
        self.store = blocks
        self.block_size = blocks.block_size

    def settle(self, store: Any) -> None:
        self.store = store

    def put(self, blocks: Iterable[Any]) -> Any:
        return self.store.put(blocks)


__all__ = ["DEFAULT_POLICIES", "HEADER", "POLICY_KEY", "FallbackBlocks", "Placement",
           "PolicyBlocks", "PolicySpec", "StoragePolicies", "StoragePolicy", "holding",
           "parse_fallbacks", "parse_policies"]
