"""Tests for ``snfd.pithos.hashmap``: the block hash, the Merkle object
hash and hashmap validation, as the reference defines them."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from snfd.pithos.hashmap import (
    BLOCK_SIZE,
    EMPTY_HASH,
    HashmapError,
    block_hash,
    blocks_in,
    checked_hashmap,
    hashmap_of,
    is_hash,
    merkle,
)

SMALL = 16  # block size of the property tests
_hex = st.binary(min_size=32, max_size=32).map(bytes.hex)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def reference_merkle(hashes: list[str]) -> str:
    """The root as the reference describes it, written independently:
    recursively over a zero-padded power-of-two leaf array."""
    if not hashes:
        return sha(b"").hex()
    if len(hashes) == 1:
        return hashes[0]
    leaves = [bytes.fromhex(h) for h in hashes]
    size = 1
    while size < len(leaves):
        size <<= 1
    leaves.extend(b"\x00" * 32 for _ in range(size - len(leaves)))

    def root(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return leaves[lo]
        mid = (lo + hi) // 2
        return sha(root(lo, mid) + root(mid, hi))

    return root(0, size).hex()


class BlockHashTests(unittest.TestCase):
    def test_empty_hash_is_sha256_of_nothing(self):
        """EMPTY_HASH is the SHA-256 of the empty string."""
        self.assertEqual(
            EMPTY_HASH, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

    @given(st.binary(max_size=64), st.integers(min_value=0, max_value=40))
    def test_trailing_zeros_are_stripped(self, data, zeros):
        """Appending zero bytes never changes a block's name, which is the
        SHA-256 of the block without its trailing zeros."""
        self.assertEqual(block_hash(data + bytes(zeros)), block_hash(data))
        self.assertEqual(block_hash(data), hashlib.sha256(data.rstrip(b"\x00")).hexdigest())

    @given(st.integers(min_value=0, max_value=4096))
    def test_all_zero_block_is_empty(self, n):
        """An all-zero block of any length is named EMPTY_HASH."""
        self.assertEqual(block_hash(bytes(n)), EMPTY_HASH)

    def test_inner_zeros_count(self):
        """Only trailing zeros are stripped: leading and inner ones matter."""
        self.assertNotEqual(block_hash(b"\x00a"), block_hash(b"a"))
        self.assertNotEqual(block_hash(b"a\x00b"), block_hash(b"ab"))

    @given(st.binary(max_size=64))
    def test_accepts_any_bytes_like(self, data):
        """bytearray and memoryview blocks hash like bytes."""
        self.assertEqual(block_hash(bytearray(data)), block_hash(data))
        self.assertEqual(block_hash(memoryview(data)), block_hash(data))

    def test_is_hash(self):
        """is_hash accepts exactly 64 lowercase hex digits."""
        self.assertTrue(is_hash(EMPTY_HASH))
        self.assertFalse(is_hash(EMPTY_HASH.upper()))
        self.assertFalse(is_hash(EMPTY_HASH[:-1]))
        self.assertFalse(is_hash(EMPTY_HASH + "0"))
        self.assertFalse(is_hash("g" * 64))


class MerkleTests(unittest.TestCase):
    def test_no_hashes(self):
        """No blocks give EMPTY_HASH."""
        self.assertEqual(merkle([]), EMPTY_HASH)

    @given(_hex)
    def test_one_hash_is_itself(self, h):
        """A one-block object's hash is its block's name, unhashed."""
        self.assertEqual(merkle([h]), h)

    @given(_hex, _hex)
    def test_two_hashes(self, a, b):
        """Two blocks: the hash of their concatenated binary digests."""
        self.assertEqual(merkle([a, b]), sha(bytes.fromhex(a) + bytes.fromhex(b)).hex())

    @given(_hex, _hex, _hex)
    def test_three_hashes_pad_with_zero_digest(self, a, b, c):
        """Three blocks are padded with one all-zero digest to four."""
        left = sha(bytes.fromhex(a) + bytes.fromhex(b))
        right = sha(bytes.fromhex(c) + bytes(32))
        self.assertEqual(merkle([a, b, c]), sha(left + right).hex())

    @given(st.lists(_hex, max_size=40))
    def test_matches_reference(self, hashes):
        """Any number of hashes (powers of two or not) gives the root of
        an independent, recursive implementation."""
        self.assertEqual(merkle(hashes), reference_merkle(hashes))

    @given(st.sampled_from([2, 4, 8, 16, 32]), st.data())
    def test_powers_of_two_need_no_padding(self, n, data):
        """With a power-of-two count, no zero digest enters the tree:
        the root equals the root of the two halves combined."""
        hashes = data.draw(st.lists(_hex, min_size=n, max_size=n))
        half = n // 2
        expected = sha(bytes.fromhex(merkle(hashes[:half])) + bytes.fromhex(merkle(hashes[half:])))
        self.assertEqual(merkle(hashes), expected.hex())

    def test_padding_differs_from_explicit_empty(self):
        """Padding uses all-zero digests, not EMPTY_HASH: three blocks
        differ from the same three plus an explicit empty block."""
        hashes = [sha(bytes([i])).hex() for i in range(3)]
        self.assertNotEqual(merkle(hashes), merkle([*hashes, EMPTY_HASH]))
        self.assertEqual(merkle(hashes), merkle([*hashes, "00" * 32]))


class HashmapOfTests(unittest.TestCase):
    def test_empty_object(self):
        """The empty object is stored as [EMPTY_HASH] and has 0 blocks."""
        self.assertEqual(hashmap_of(b"", SMALL), [EMPTY_HASH])
        self.assertEqual(blocks_in(0, SMALL), 0)

    def test_one_block(self):
        """Data shorter than a block is one block."""
        self.assertEqual(hashmap_of(b"abc", SMALL), [block_hash(b"abc")])

    @given(st.integers(min_value=1, max_value=6))
    def test_exact_multiples(self, n):
        """n full blocks give exactly n hashes, none for an empty tail."""
        data = bytes(range(1, SMALL + 1)) * n
        self.assertEqual(len(hashmap_of(data, SMALL)), n)
        self.assertEqual(blocks_in(len(data), SMALL), n)

    @given(st.binary(min_size=1, max_size=200))
    def test_hashes_of_slices(self, data):
        """Each entry names the matching block-size slice; the count is
        ceil(size / block_size)."""
        hashes = hashmap_of(data, SMALL)
        self.assertEqual(len(hashes), -(-len(data) // SMALL))
        self.assertEqual(len(hashes), blocks_in(len(data), SMALL))
        for i, h in enumerate(hashes):
            self.assertEqual(h, block_hash(data[i * SMALL:(i + 1) * SMALL]))

    def test_trailing_zeros_in_last_block(self):
        """A last block ending in zeros is named without them, yet the
        object's size still counts them."""
        data = b"x" * SMALL + b"y\x00\x00"
        self.assertEqual(hashmap_of(data, SMALL), [block_hash(b"x" * SMALL), block_hash(b"y")])
        self.assertEqual(blocks_in(len(data), SMALL), 2)

    def test_zero_blocks_inside(self):
        """A block of zeros inside an object is EMPTY_HASH."""
        data = b"a" * SMALL + bytes(SMALL) + b"b"
        self.assertEqual(hashmap_of(data, SMALL)[1], EMPTY_HASH)

    def test_default_block_size(self):
        """The default block size is 4 MiB."""
        self.assertEqual(BLOCK_SIZE, 4 * 1024 * 1024)
        self.assertEqual(blocks_in(BLOCK_SIZE + 1), 2)


class CheckedHashmapTests(unittest.TestCase):
    def test_empty_object_forms(self):
        """0 bytes with [] or [EMPTY_HASH] is accepted as [EMPTY_HASH]."""
        self.assertEqual(checked_hashmap(0, [], SMALL), (0, [EMPTY_HASH]))
        self.assertEqual(checked_hashmap(0, [EMPTY_HASH], SMALL), (0, [EMPTY_HASH]))
        self.assertEqual(checked_hashmap(0, [EMPTY_HASH.upper()], SMALL), (0, [EMPTY_HASH]))

    def test_empty_object_with_other_hashes(self):
        """0 bytes with any other hash, or two, is refused."""
        other = "ab" * 32
        for hashes in ([other], [EMPTY_HASH, EMPTY_HASH]):
            self.assertRaises(HashmapError, checked_hashmap, 0, hashes, SMALL)

    @given(st.integers(min_value=1, max_value=500), st.integers(min_value=-2, max_value=2))
    def test_count_must_match_size(self, size, delta):
        """bytes needs exactly ceil(bytes / block_size) hashes."""
        need = -(-size // SMALL)
        count = need + delta
        if count < 0:
            return
        hashes = ["ab" * 32] * count
        if delta == 0:
            self.assertEqual(checked_hashmap(size, hashes, SMALL), (size, hashes))
        else:
            self.assertRaises(HashmapError, checked_hashmap, size, hashes, SMALL)

    def test_uppercase_is_lowercased(self):
        """Hex in any case is accepted and returned lowercase."""
        self.assertEqual(checked_hashmap(1, ["AB" * 32], SMALL), (1, ["ab" * 32]))

    def test_bad_hex(self):
        """Entries that are not 64 hex digits, or not strings, are refused."""
        for bad in ("ab" * 31, "ab" * 33, "zz" * 32, 5, None, ["ab" * 32]):
            self.assertRaises(HashmapError, checked_hashmap, 1, [bad], SMALL)

    def test_bad_size(self):
        """bytes must be a non-negative int (not bool, float or str)."""
        for bad in (-1, True, 1.0, "1", None):
            self.assertRaises(HashmapError, checked_hashmap, bad, ["ab" * 32], SMALL)

    def test_hashes_must_be_a_list(self):
        """hashes must be a JSON list."""
        for bad in ("ab" * 32, {"a": 1}, None, ("ab" * 32,)):
            self.assertRaises(HashmapError, checked_hashmap, 1, bad, SMALL)

    def test_message_says_how(self):
        """The error text names the expected count."""
        e = self.assertRaises(HashmapError, checked_hashmap, 20, ["ab" * 32], SMALL)
        self.assertIn("2 hashes", str(e))
