"""What the NBD server (``snfd.archip.nbd``) needs of a volume, and what
the volume store (``snfd.archip.volumes``) gives it: an open volume's
bytes.  Both sides meet only through these two protocols.

Offsets and lengths are bytes.  Every method is a coroutine that runs its
I/O off the reactor thread (or through the block store, which does).
"""

from __future__ import annotations

from typing import Protocol


class VolumeBusy(Exception):
    """The volume is open for writing elsewhere (one writer per volume per
    node); the message names it."""


class VolumeIO(Protocol):
    """An open volume.

    ``size`` is the volume's size now: it may grow while open (a client
    that negotiated the old size keeps using it); ``block_size`` is the
    volume's object size (4 MiB), which a client may use as its preferred
    request size.  A read-only volume (a snapshot, or opened for reading) refuses
    writes with ``PermissionError``.  Reads and writes anywhere inside
    ``[0, size)`` are valid; past the end is ``ValueError``.
    """

    @property
    def size(self) -> int: ...

    block_size: int
    read_only: bool

    async def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``: what was last written there,
        the origin's bytes where nothing was, zeros where neither."""

    async def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset``; when this returns, a later read
        sees it, and it survives a crash of the node once ``flush``
        returned (or at once: an implementation may be stricter)."""

    async def flush(self) -> None:
        """Make every write that returned before this call durable."""

    async def trim(self, offset: int, length: int) -> None:
        """The range's data is no longer needed: whole objects inside it
        may be released (they then read as zeros); partial ones may be
        left as they are.  Any length up to ``size`` is valid."""

    async def write_zeroes(self, offset: int, length: int) -> None:
        """The range reads as zeros afterwards; whole objects inside it
        become the zero object (no data stored).  Any length up to
        ``size`` is valid."""

    async def close(self) -> None:
        """Release the volume (its write lock); flushes first."""


class VolumeOpener(Protocol):
    """Finds volumes by name (the NBD export name)."""

    async def open(self, name: str, writable: bool) -> VolumeIO:
        """Open volume ``name``; ``KeyError`` when there is none,
        ``VolumeBusy`` when ``writable`` and another writer holds it."""

    async def names(self) -> list[str]:
        """The volumes that may be opened (the NBD export list)."""
