"""The hashing rules of Pithos, exactly as the reference defines them.

- A block is at most ``BLOCK_SIZE`` bytes; its name is the SHA-256 of the
  block with its trailing zero bytes stripped, so an all-zero block (and
  the empty string) is named ``EMPTY_HASH``.
- An object's hashmap is the list of its block names, ``ceil(size /
  block_size)`` entries; an empty object is stored with ``[EMPTY_HASH]``.
- The object hash (``X-Object-Hash``) is the Merkle root over the binary
  block digests: no block gives ``EMPTY_HASH``, one block gives its own
  name, more are padded with all-zero digests to the next power of two and
  paired (``H(left || right)``) until one remains.

Hashes travel as lowercase hex strings everywhere above the block store.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

BLOCK_SIZE = 4 * 1024 * 1024
HASH_ALGORITHM = "sha256"
DIGEST_SIZE = 32
EMPTY_HASH = hashlib.sha256(b"").hexdigest()

_HEX = re.compile(r"^[0-9a-f]{64}$")


class HashmapError(ValueError):
    """A hashmap a client sent is malformed; ``str()`` says how."""


def block_hash(block: bytes | bytearray | memoryview) -> str:
    """The name of ``block``: SHA-256 of it without trailing zero bytes."""
    data = bytes(block).rstrip(b"\x00")
    return hashlib.sha256(data).hexdigest()


def blocks_in(size: int, block_size: int = BLOCK_SIZE) -> int:
    """How many hashes a hashmap of an object of ``size`` bytes holds
    (0 for the empty object, whose stored map is ``[EMPTY_HASH]``)."""
    return -(-size // block_size)


def hashmap_of(data: bytes, block_size: int = BLOCK_SIZE) -> list[str]:
    """The hashmap of ``data`` as it is stored (``[EMPTY_HASH]`` when empty)."""
    if not data:
        return [EMPTY_HASH]
    return [block_hash(data[i:i + block_size]) for i in range(0, len(data), block_size)]


def merkle(hashes: Sequence[str]) -> str:
    """The object hash of a hashmap (hex), the reference's Merkle root."""
    if not hashes:
        return EMPTY_HASH
    if len(hashes) == 1:
        return hashes[0]
    level = [bytes.fromhex(h) for h in hashes]
    width = 2
    while width < len(level):
        width *= 2
    level += [bytes(DIGEST_SIZE)] * (width - len(level))
    while len(level) > 1:
        level = [hashlib.sha256(level[i] + level[i + 1]).digest()
                 for i in range(0, len(level), 2)]
    return level[0].hex()


def checked_hashmap(size: object, hashes: object,
                    block_size: int = BLOCK_SIZE) -> tuple[int, list[str]]:
    """Validate a hashmap a client sent: ``bytes`` and ``hashes`` must agree.

    Returns ``(size, hashes)`` with the hashes lowercased; for 0 bytes both
    ``[]`` and ``[EMPTY_HASH]`` are accepted and ``[EMPTY_HASH]`` returned.
    @raise HashmapError: wrong types, bad hex, or the wrong number of hashes.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise HashmapError("'bytes' must be a non-negative integer.")
    if not isinstance(hashes, list):
        raise HashmapError("'hashes' must be a list of hex strings.")
    out = []
    for h in hashes:
        if not isinstance(h, str) or not _HEX.match(h.lower()):
            raise HashmapError(f"{str(h)[:80]!r} is not a {HASH_ALGORITHM} hex digest.")
        out.append(h.lower())
    if size == 0:
        if out in ([], [EMPTY_HASH]):
            return 0, [EMPTY_HASH]
        raise HashmapError("An empty object has no hashes (or only the empty hash).")
    expected = blocks_in(size, block_size)
    if len(out) != expected:
        raise HashmapError(
            f"{size} bytes need {expected} hashes of {block_size}-byte blocks,"
            f" not {len(out)}.")
    return size, out


def is_hash(value: str) -> bool:
    """Whether ``value`` is a lowercase hex digest of the block hash."""
    return bool(_HEX.match(value))
