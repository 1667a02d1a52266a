"""Linux inotify for a directory tree, for a blocking process (``snf sync
--watch``), by ``ctypes`` on the C library: no dependency.

inotify watches one directory, not a tree, so ``TreeWatch`` adds a watch
per directory and one for each directory that appears (created or moved
in), with the events that change a file's content or name.  It does not
say *what* changed: the sync rescans (cheaply: unchanged files are known
by size and mtime), so the watch only has to say *that* something did,
and when the kernel's queue overflowed (``IN_Q_OVERFLOW``) or a watch
could not be added, it says so too.  Nothing is lost by a missed detail.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
import time
from collections.abc import Callable
from pathlib import Path

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

#: What a sync cares about: content written, names appearing or going.
MASK = (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


class InotifyError(OSError):
    """inotify is not available, or the tree's root cannot be watched."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if not hasattr(libc, "inotify_init1"):
        raise InotifyError(errno.ENOSYS, "inotify is not available on this system")
    return libc


class TreeWatch:
    """Changes under ``root`` (a directory), seen by inotify.

    ``ignore(name)`` says which leaf names are the watcher's own (the sync
    state, partial downloads): events on them do not count.  Close it.
    """

    def __init__(self, root: Path, ignore: Callable[[str], bool] = lambda name: False):
        self.root = root
        self.ignore = ignore
        self._libc = _libc()
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise InotifyError(err, f"inotify: {os.strerror(err)}")
        self.fd = fd
        self._dirs: dict[int, Path] = {}
        #: Set when a change may have been missed (overflow, a watch that
        #: could not be added): the caller rescans everything anyway.
        self.overflowed = False
        self._buffer = b""
        if not self._add_tree(root):
            self.close()
            raise InotifyError(errno.ENOENT, f"{root}: cannot watch it")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> TreeWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add(self, path: Path) -> bool:
        wd = self._libc.inotify_add_watch(
            self.fd, os.fsencode(path), MASK | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
        if wd < 0:
            # Gone already (its deletion is an event of the parent), or
            # out of watches (max_user_watches): then say a change may hide.
            if ctypes.get_errno() != errno.ENOENT:
                self.overflowed = True
            return False
        self._dirs[wd] = path
        return True

    def _add_tree(self, top: Path) -> bool:
        if not self._add(top):
            return False
        for dirpath, dirnames, _ in os.walk(top):
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            for d in dirnames:
                self._add(Path(dirpath) / d)
        return True

    def _events(self) -> list[tuple[int, int, str]]:
        """The ``(wd, mask, name)`` of the events queued now."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buffer += chunk
        out = []
        data, pos = self._buffer, 0
        while pos + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if end > len(data):
                break
            name = os.fsdecode(data[pos + _HEADER.size:end].rstrip(b"\x00"))
            out.append((wd, mask, name))
            pos = end
        self._buffer = data[pos:]
        return out

    def _note(self, events: list[tuple[int, int, str]]) -> bool:
        """Follow new directories; whether any event is a change that counts."""
        changed = False
        for wd, mask, name in events:
            if mask & IN_Q_OVERFLOW:
                self.overflowed = True
                changed = True
                continue
            if mask & IN_IGNORED:
                self._dirs.pop(wd, None)
                continue
            parent = self._dirs.get(wd)
            if parent is None:
                continue
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                self._add_tree(parent / name)
            if name and self.ignore(name):
                continue
            changed = True
        return changed

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a change; whether one came."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            if ready and self._note(self._events()):
                return True
            if time.monotonic() >= deadline:
                return self._note(self._events())

    def settle(self, quiet: float, longest: float) -> None:
        """After a change: wait until ``quiet`` seconds pass with no further
        change, but no longer than ``longest`` seconds in all (a batch of
        edits becomes one pass)."""
        deadline = time.monotonic() + longest
        while time.monotonic() < deadline:
            if not self.wait(min(quiet, deadline - time.monotonic())):
                return
