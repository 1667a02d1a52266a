"""Archipelago's volume maps: the v2 format and Pithos hashmaps (v0).

Pure: no I/O.  A volume is a map: its size, its object size and one entry
per object (``ceil(size / block_size)`` of them) naming where that
object's bytes are.

The v2 layout is Archipelago's own, as its mapper writes it
(``src/include/mapper-version2.h`` and ``src/mapperd/mapper-version2.c`` in
grnet/archipelago):

- a 32-byte header, big-endian: signature ``AMF.`` (u32 ``0x414d462e``),
  version (u32, 2), volume size (u64), block size (u32), map flags (u32:
  ``MAP_READONLY`` 1, ``MAP_DELETED`` 2), epoch (u64);
- one 128-byte entry per object: flags (u8: ``WRITABLE`` 1, ``ARCHIP`` 2,
  ``ZERO`` 4, ``DELETED`` 8), the name's length (u32) and the name (123
  bytes, zero-padded).  The mapper stores the length in host byte order
  (a plain store into a packed struct); Archipelago ran on x86 only, so
  it is little-endian here, which reads the maps it wrote.

Archipelago keeps the header and the entries in separate storage objects
(the header in ``<volume>``, the entries in 512 KiB chunks of
``<volume>_<block id>`` objects); snfd keeps one map as one byte string,
the header followed by the entries (``encode``/``decode``).

Object names: a block of the content-addressed store is named by its hex
hash; the zero object is ``ZERO_OBJECT``, snfd's ``EMPTY_HASH`` (the
SHA-256 of the empty string, which is also Archipelago's ``zero_block``);
an object a volume owns is ``<volume>_<epoch>_<index>``, both numbers as
16 lowercase hex digits (``owned_name``).

v0 is a Pithos hashmap: no header, one 32-byte binary SHA-256 per block,
every object read-only; its size comes from elsewhere (``decode_v0``).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from snfd.pithos.hashmap import BLOCK_SIZE, EMPTY_HASH

#: ``AMF.`` as a big-endian u32.
SIGNATURE = 0x414D462E
VERSION = 2

#: Map flags.
MAP_READONLY = 1 << 0
MAP_DELETED = 1 << 1
_MAP_FLAGS = MAP_READONLY | MAP_DELETED

#: Object flags.
WRITABLE = 1 << 0
ARCHIP = 1 << 1
ZERO = 1 << 2
DELETED = 1 << 3
_OBJECT_FLAGS = WRITABLE | ARCHIP | ZERO | DELETED

#: The zero object: reads as zeros, never stored, never copied.
ZERO_OBJECT = EMPTY_HASH

HEADER = struct.Struct(">IIQIIQ")
ENTRY = struct.Struct("<BI123s")
MAX_NAME = 123
#: The longest volume name whose owned objects' names fit an entry.
MAX_VOLUME_NAME = MAX_NAME - 2 * 16 - 2

_V0_HASH = 32
_NAME = re.compile(r"^[\x21-\x7e]+$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


def objects_in(size: int, block_size: int) -> int:
    """How many objects a volume of ``size`` bytes has."""
    if block_size <= 0:
        raise ValueError(f"block size {block_size} is not positive")
    return -(-size // block_size)


def owned_name(volume: str, epoch: int, index: int) -> str:
    """The name of the object volume ``volume`` owns at ``index`` since
    ``epoch`` (the reference's ``<volume>_<epoch>_<index>``)."""
    return f"{volume}_{epoch:016x}_{index:016x}"


_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_volume_name(name: str) -> bool:
    """Whether ``name`` has a volume name's characters: letters, digits,
    ``.``, ``_`` and ``-``, not starting with a punctuation mark (its
    length is checked apart: at most ``MAX_VOLUME_NAME``)."""
    return isinstance(name, str) and _VOLUME_NAME.match(name) is not None


_OWNED_NAME = re.compile(r"(.+)_([0-9a-f]{16})_([0-9a-f]{16})$")


def owner_of(name: str) -> tuple[str, int, int] | None:
    """``(volume, epoch, index)`` of an owned object's name (the inverse
    of ``owned_name``), or None for a name that is not one."""
    m = _OWNED_NAME.match(name)
    if m is None:
        return None
    return m.group(1), int(m.group(2), 16), int(m.group(3), 16)


@dataclass(frozen=True)
class Entry:
    """One object of a map: its name and flags."""

    name: str
    flags: int = 0

    def __post_init__(self) -> None:
        if self.flags & ~_OBJECT_FLAGS:
            raise ValueError(f"unknown object flags {self.flags:#x}")
        encoded = self.name.encode("ascii", "replace")
        if not _NAME.match(self.name) or len(encoded) > MAX_NAME:
            raise ValueError(f"object name {self.name!r} is not 1 to {MAX_NAME}"
                             " printable ASCII characters")

    @classmethod
    def zero(cls) -> Entry:
        """The zero object."""
        return cls(ZERO_OBJECT, ZERO)

    @classmethod
    def block(cls, name: str) -> Entry:
        """A read-only block of the content-addressed store (the zero
        object when ``name`` is ``ZERO_OBJECT``)."""
        if name == ZERO_OBJECT:
            return cls.zero()
        if not _HEX.match(name):
            raise ValueError(f"{name!r} is not a block name")
        return cls(name)

    @property
    def writable(self) -> bool:
        return bool(self.flags & WRITABLE)

    @property
    def archip(self) -> bool:
        """Owned by a volume (mutable data), not a content-addressed block."""
        return bool(self.flags & ARCHIP)

    @property
    def is_zero(self) -> bool:
        return bool(self.flags & ZERO) or (not self.archip and self.name == ZERO_OBJECT)

    def frozen(self) -> Entry:
        """This entry no longer writable (what a snapshot leaves)."""
        return Entry(self.name, self.flags & ~WRITABLE)


@dataclass(frozen=True)
class MapV2:
    """A volume's map: ``objects_in(size, block_size)`` entries."""

    size: int
    block_size: int
    entries: tuple[Entry, ...]
    flags: int = 0
    epoch: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.block_size < 1 << 32:
            raise ValueError(f"block size {self.block_size} out of range")
        if not 0 <= self.size < 1 << 64:
            raise ValueError(f"size {self.size} out of range")
        if not 0 <= self.epoch < 1 << 64:
            raise ValueError(f"epoch {self.epoch} out of range")
        if self.flags & ~_MAP_FLAGS:
            raise ValueError(f"unknown map flags {self.flags:#x}")
        want = objects_in(self.size, self.block_size)
        if len(self.entries) != want:
            raise ValueError(f"a map of {self.size} bytes in objects of"
                             f" {self.block_size} has {want} entries,"
                             f" not {len(self.entries)}")

    @classmethod
    def empty(cls, size: int, block_size: int = BLOCK_SIZE, **kw: int) -> MapV2:
        """A volume of zeros."""
        entries = (Entry.zero(),) * objects_in(size, block_size)
        return cls(size, block_size, entries, **kw)

    @property
    def read_only(self) -> bool:
        return bool(self.flags & MAP_READONLY)


def encode(m: MapV2) -> bytes:
    """``m`` as bytes: the header, then the entries."""
    parts = [HEADER.pack(SIGNATURE, VERSION, m.size, m.block_size, m.flags, m.epoch)]
    for e in m.entries:
        name = e.name.encode("ascii")
        parts.append(ENTRY.pack(e.flags, len(name), name))
    return b"".join(parts)


def encoded_length(header: bytes) -> int:
    """The length of the map whose encoding starts with ``header`` (at
    least ``HEADER.size`` bytes); ``ValueError`` when it is no v2 header."""
    _, _, size, block_size = _header(header)[:4]
    return HEADER.size + ENTRY.size * objects_in(size, block_size)


def decode(data: bytes | bytearray | memoryview) -> MapV2:
    """The map ``data`` encodes; ``ValueError`` saying what is wrong when it
    is not exactly one v2 map."""
    data = memoryview(data).cast("B")
    _, _, size, block_size, flags, epoch = _header(data)
    count = objects_in(size, block_size)
    want = HEADER.size + ENTRY.size * count
    if len(data) < want:
        raise ValueError(f"map truncated: {len(data)} bytes of {want}"
                         f" ({count} entries)")
    if len(data) > want:
        raise ValueError(f"map has {len(data) - want} bytes past its"
                         f" {count} entries")
    entries = []
    for i in range(count):
        eflags, length, raw = ENTRY.unpack_from(data, HEADER.size + i * ENTRY.size)
        if length == 0 or length > MAX_NAME:
            raise ValueError(f"entry {i}: object name length {length}"
                             f" not in 1..{MAX_NAME}")
        try:
            name = raw[:length].decode("ascii")
            entries.append(Entry(name, eflags))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"entry {i}: {e}") from None
    return MapV2(size, block_size, tuple(entries), flags, epoch)


def _header(data: bytes | memoryview) -> tuple[int, int, int, int, int, int]:
    if len(data) < HEADER.size:
        raise ValueError(f"map truncated: {len(data)} bytes, a header"
                         f" is {HEADER.size}")
    fields = HEADER.unpack_from(data, 0)
    signature, version, _, block_size, flags, _ = fields
    if signature != SIGNATURE:
        raise ValueError(f"not an Archipelago map: signature {signature:#010x},"
                         f" not {SIGNATURE:#010x} ('AMF.')")
    if version != VERSION:
        raise ValueError(f"map version {version} is not {VERSION}")
    if block_size == 0:
        raise ValueError("map block size is 0")
    if flags & ~_MAP_FLAGS:
        raise ValueError(f"unknown map flags {flags:#x}")
    return fields


def from_hashmap(hashes: Sequence[str], size: int,
                 block_size: int = BLOCK_SIZE) -> MapV2:
    """A read-only map over a Pithos object's hashmap (hex names) of
    ``size`` bytes; ``EMPTY_HASH`` entries become zero objects.  An empty
    object's stored hashmap ``[EMPTY_HASH]`` gives a map of no entries."""
    count = objects_in(size, block_size)
    hashes = list(hashes)
    if size == 0 and hashes == [EMPTY_HASH]:
        hashes = []
    if len(hashes) != count:
        raise ValueError(f"a hashmap of {len(hashes)} blocks does not describe"
                         f" {size} bytes in blocks of {block_size}")
    return MapV2(size, block_size, tuple(Entry.block(h) for h in hashes),
                 MAP_READONLY)


def decode_v0(data: bytes | bytearray | memoryview, size: int,
              block_size: int = BLOCK_SIZE) -> MapV2:
    """A v0 map (a Pithos hashmap: 32-byte binary hashes, no header) of a
    volume of ``size`` bytes, which the format does not record.  Extra
    trailing hashes are refused, as are too few."""
    data = bytes(data)
    if len(data) % _V0_HASH:
        raise ValueError(f"a v0 map of {len(data)} bytes is not whole"
                         f" {_V0_HASH}-byte hashes")
    hashes = [data[i:i + _V0_HASH].hex() for i in range(0, len(data), _V0_HASH)]
    return from_hashmap(hashes, size, block_size)


def encode_v0(hashes: Iterable[str]) -> bytes:
    """A hashmap (hex names) as a v0 map."""
    return b"".join(bytes.fromhex(h) for h in hashes)
