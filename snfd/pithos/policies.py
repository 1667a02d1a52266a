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
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer

from snfd import errors
from snfd.config import ConfigError
from snfd.pithos.hashmap import EMPTY_HASH
from snfd.pithos.store import STORAGE_POLICY

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
                    place: Callable[[PolicySpec, int], str]) -> StoragePolicies:
        """The policies of a ``[pithos]`` section: ``place(spec, index)``
        says where each policy's blocks are (``file_places``,
        ``rados_places``) and ``make_store(place)`` builds its store.

        @raise ConfigError: the default names no policy, or two policies
            share a place.
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
        return cls([StoragePolicy(spec.name, make_store(where), spec.aliases)
                    for spec, where in policies], default)

    def __iter__(self) -> Iterator[StoragePolicy]:
        return iter(self._policies)

    def __len__(self) -> int:
        return len(self._policies)

    @property
    def block_size(self) -> int:
        return int(self.primary.blocks.block_size)

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
        """Copy the blocks ``hashes`` that ``into`` lacks from the other
        policies' stores; whether every one is there now."""
        wanted = [h for h in dict.fromkeys(hashes) if h != EMPTY_HASH]
        if not wanted:
            return True
        lacking = list(await into.missing(wanted))
        for p in self._policies:
            if not lacking:
                break
            if p.blocks is into:
                continue
            found = [h for h in lacking if h not in set(await p.blocks.missing(lacking))]
            for h in found:
                block = await p.blocks.get(h)
                await _put_named(into, h, block)
            lacking = [h for h in lacking if h not in found]
        return not lacking


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


async def _put_named(store: Any, name: str, block: bytes) -> None:
    """Store a block read back padded: under its known name when the store
    allows it (no hashing), else by content (the padding is not part of
    the name, so the same name results)."""
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
    store has, ``put`` writes to policy 0 (a version made from them has
    its missing blocks brought into its container's store).  Not the
    node's ``IBlockStore``: it neither scans nor deletes."""

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
            lacking = list(await store.missing(lacking))
        return lacking


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


__all__ = ["DEFAULT_POLICIES", "HEADER", "POLICY_KEY", "Placement", "PolicyBlocks",
           "PolicySpec", "StoragePolicies", "StoragePolicy", "parse_policies"]
