"""Archipelago's map formats: v2 as its mapper writes it, v0 (hashmaps)."""

from __future__ import annotations

import hashlib
import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from snfd.archip import mapfile
from snfd.archip.mapfile import ARCHIP, MAP_READONLY, WRITABLE, ZERO, Entry, MapV2
from snfd.pithos.hashmap import EMPTY_HASH

BS = 4 << 20


def _hash(i: int) -> str:
    return hashlib.sha256(b"block %d" % i).hexdigest()


_entries = st.one_of(
    st.builds(Entry.block, st.integers(0, 1000).map(_hash)),
    st.just(Entry.zero()),
    st.builds(lambda e, i: Entry(mapfile.owned_name("vol-1", e, i), WRITABLE | ARCHIP),
              st.integers(0, 2**64 - 1), st.integers(0, 2**40)),
    st.builds(lambda i: Entry(mapfile.owned_name("v", 3, i), ARCHIP), st.integers(0, 99)),
)


@st.composite
def _maps(draw: st.DrawFn) -> MapV2:
    block_size = draw(st.sampled_from([512, 4096, BS]))
    count = draw(st.integers(0, 20))
    size = 0 if count == 0 else (count - 1) * block_size + draw(st.integers(1, block_size))
    entries = tuple(draw(st.lists(_entries, min_size=count, max_size=count)))
    return MapV2(size, block_size, entries, draw(st.sampled_from([0, 1, 2, 3])),
                 draw(st.integers(0, 2**64 - 1)))


class LayoutTests(unittest.TestCase):
    """The bytes are Archipelago's v2 layout."""

    def test_header_and_entry(self) -> None:
        """A 32-byte big-endian header starting ``AMF.``, then 128-byte
        entries: flags, the name's length (little-endian, as the mapper
        writes it on x86) and the zero-padded name."""
        m = MapV2(BS + 1, BS, (Entry.block(_hash(0)), Entry.zero()), MAP_READONLY, 7)
        data = mapfile.encode(m)
        self.assertEqual(len(data), 32 + 2 * 128)
        self.assertEqual(data[:4], b"AMF.")
        self.assertEqual(struct.unpack(">IIQIIQ", data[:32]),
                         (0x414D462E, 2, BS + 1, BS, 1, 7))
        first = data[32:160]
        self.assertEqual(first[0], 0)
        self.assertEqual(struct.unpack("<I", first[1:5]), (64,))
        self.assertEqual(first[5:69], _hash(0).encode())
        self.assertEqual(first[69:], bytes(59))
        self.assertEqual(data[160], ZERO)
        self.assertEqual(data[165:229], EMPTY_HASH.encode())

    def test_zero_object_is_snfd_empty_hash(self) -> None:
        """The zero object is named ``EMPTY_HASH``, the SHA-256 of nothing
        (Archipelago's ``zero_block`` too)."""
        self.assertEqual(mapfile.ZERO_OBJECT, EMPTY_HASH)
        self.assertEqual(mapfile.ZERO_OBJECT, hashlib.sha256(b"").hexdigest())
        self.assertTrue(Entry.block(EMPTY_HASH).is_zero)

    def test_owned_name(self) -> None:
        """Owned objects are ``<volume>_<epoch>_<index>`` in 16 hex digits."""
        self.assertEqual(mapfile.owned_name("vol", 1, 255),
                         "vol_0000000000000001_00000000000000ff")
        longest = "v" * mapfile.MAX_VOLUME_NAME
        self.assertEqual(len(mapfile.owned_name(longest, 2**64 - 1, 2**64 - 1)),
                         mapfile.MAX_NAME)

    def test_entry_count(self) -> None:
        """A map has ceil(size / block_size) entries."""
        self.assertEqual(len(MapV2.empty(BS * 3, BS).entries), 3)
        self.assertEqual(len(MapV2.empty(BS * 3 + 1, BS).entries), 4)
        self.assertEqual(len(MapV2.empty(0, BS).entries), 0)
        with self.assertRaises(ValueError):
            MapV2(BS + 1, BS, (Entry.zero(),))


class RoundTripTests(unittest.TestCase):
    @given(_maps())
    def test_v2(self, m: MapV2) -> None:
        """Every map decodes to itself."""
        self.assertEqual(mapfile.decode(mapfile.encode(m)), m)
        self.assertEqual(mapfile.encoded_length(mapfile.encode(m)[:32]),
                         len(mapfile.encode(m)))

    @given(st.lists(st.integers(0, 50), min_size=1, max_size=30), st.integers(1, BS))
    def test_v0(self, ids: list[int], last: int) -> None:
        """A hashmap read as v0 gives read-only entries of the same names."""
        hashes = [_hash(i) for i in ids]
        size = (len(hashes) - 1) * BS + last
        m = mapfile.decode_v0(mapfile.encode_v0(hashes), size)
        self.assertEqual([e.name for e in m.entries], hashes)
        self.assertTrue(m.read_only)
        self.assertFalse(any(e.writable or e.archip for e in m.entries))


def _good() -> bytes:
    return mapfile.encode(MapV2(2 * BS, BS, (Entry.block(_hash(1)), Entry.zero())))


class ValidationTests(unittest.TestCase):
    """What is not one v2 map is a ValueError saying why."""

    def _refused(self, data: bytes, words: str) -> None:
        with self.assertRaises(ValueError) as e:
            mapfile.decode(data)
        self.assertIn(words, str(e.exception))

    def test_short_header(self) -> None:
        """Less than a header."""
        self._refused(b"AMF.\x00\x00", "truncated")
        self._refused(b"", "truncated")

    def test_signature(self) -> None:
        """Another signature (a v1 map starts with its version)."""
        self._refused(b"XMF." + _good()[4:], "signature")
        self._refused(struct.pack("<I", 1) + _good()[4:], "signature")

    def test_version(self) -> None:
        """Versions other than 2."""
        data = bytearray(_good())
        data[4:8] = struct.pack(">I", 1)
        self._refused(bytes(data), "version 1")

    def test_block_size_zero(self) -> None:
        data = bytearray(_good())
        data[16:20] = bytes(4)
        self._refused(bytes(data), "block size")

    def test_unknown_map_flags(self) -> None:
        data = bytearray(_good())
        data[20:24] = struct.pack(">I", 4)
        self._refused(bytes(data), "map flags")

    def test_truncated_entries(self) -> None:
        """Fewer entries than the size needs."""
        self._refused(_good()[:-1], "truncated")
        self._refused(_good()[:32], "truncated")

    def test_trailing_bytes(self) -> None:
        self._refused(_good() + b"\x00", "past")

    def test_size_mismatch(self) -> None:
        """A size that needs more entries than there are."""
        data = bytearray(_good())
        data[8:16] = struct.pack(">Q", 2 * BS + 1)
        self._refused(bytes(data), "truncated")

    def test_name_length(self) -> None:
        """A name length of 0 or past 123."""
        for length in (0, 124, 2**32 - 1):
            data = bytearray(_good())
            data[33:37] = struct.pack("<I", length)
            self._refused(bytes(data), "entry 0")

    def test_unknown_object_flags(self) -> None:
        data = bytearray(_good())
        data[32] = 0x10
        self._refused(bytes(data), "object flags")

    def test_name_not_ascii(self) -> None:
        data = bytearray(_good())
        data[37] = 0xFF
        self._refused(bytes(data), "entry 0")

    def test_v0_errors(self) -> None:
        """v0: partial hashes, or a count the size does not need."""
        with self.assertRaises(ValueError):
            mapfile.decode_v0(bytes(33), BS)
        with self.assertRaises(ValueError):
            mapfile.decode_v0(mapfile.encode_v0([_hash(1)] * 2), BS)
        with self.assertRaises(ValueError):
            mapfile.decode_v0(mapfile.encode_v0([_hash(1)]), BS + 1)

    def test_v0_zero_and_empty(self) -> None:
        """``EMPTY_HASH`` in a hashmap is the zero object; an empty file's
        ``[EMPTY_HASH]`` is a map of nothing."""
        m = mapfile.from_hashmap([_hash(1), EMPTY_HASH], 2 * BS)
        self.assertEqual([e.is_zero for e in m.entries], [False, True])
        self.assertEqual(mapfile.from_hashmap([EMPTY_HASH], 0).entries, ())

    def test_bad_values(self) -> None:
        """Entries and maps refuse impossible values when built."""
        with self.assertRaises(ValueError):
            Entry("x" * 124)
        with self.assertRaises(ValueError):
            Entry("a b")
        with self.assertRaises(ValueError):
            Entry("x", 0x10)
        with self.assertRaises(ValueError):
            Entry.block("not-a-hash")
        with self.assertRaises(ValueError):
            MapV2.empty(BS, 0)
        with self.assertRaises(ValueError):
            MapV2.empty(BS, BS, flags=8)
