"""A node's memory of its containers' settings, so that an object request
need not read them from the database (docs/plans/container-settings-cache.md).

The settings (``snfd.pithos.model.ContainerSettings``: existence, node,
policy, metadata, the container's own sharing) change rarely; a trigger on
each of their tables tells every node of a change at its commit (NOTIFY on
``store.CONTAINERS_CHANNEL``, payload the container path).  The storage
service's ``snfd.db.notify.Listener`` hands those to ``invalidate`` and
its gaps to ``clear``; the ``Backend`` drops what its own writes change
before it answers them.  Statistics are never kept here.

Across nodes the cache is as fresh as the notifications: between a commit
on one node and its notification reaching another, the other serves from
the settings before it (docs/pithos.md).  Nothing that decides who may
read or write comes from here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

_ABSENT = object()


class SettingsCache:
    """Container settings by container path (``<account>/<container>``).

    Its promises:

    - It answers from memory only while ``usable()`` holds (its listener
      is connected); otherwise every ``get`` reads, and keeps nothing.
    - Once ``invalidate(path)`` has run (a notification delivered, or this
      node's own change), ``get(path)`` answers only what a read begun
      after it returned: a read in flight then keeps nothing, since a
      generation counted per path, taken when a read begins, must still be
      current when it ends.
    - ``clear()`` (after each (re)connection of its listener, when
      notifications may have been lost) does the same for every path.
    - It holds at most ``max_entries`` answers, the least recently used
      dropped first; an absent container (``None``) is an answer too.

    It runs on the reactor thread only.
    """

    def __init__(self, usable: Callable[[], bool] = lambda: True,
                 max_entries: int = 10_000):
        self._usable = usable
        self._max = max_entries
        self._entries: OrderedDict[str, Any] = OrderedDict()
        # path -> [generation, reads in flight], only while reads are in
        # flight (a path no read waits on needs no counter).
        self._reading: dict[str, list[int]] = {}
        # Bumped by ``clear``: the generation of every path at once.
        self._epoch = 0

    @property
    def answers(self) -> bool:
        """Whether ``get`` may answer from memory now."""
        return self._usable()

    async def get(self, path: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """The settings at ``path``: kept, or what ``read()`` returns (then
        kept, unless invalidated or cleared meanwhile)."""
        if not self._usable():
            return await read()
        found = self._entries.get(path, _ABSENT)
        if found is not _ABSENT:
            self._entries.move_to_end(path)
            return found
        counter = self._reading.setdefault(path, [0, 0])
        counter[1] += 1
        seen = (self._epoch, counter[0])
        try:
            value = await read()
        finally:
            counter[1] -= 1
            if not counter[1]:
                del self._reading[path]
        if seen == (self._epoch, counter[0]) and self._usable():
            self._entries[path] = value
            self._entries.move_to_end(path)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return value

    def invalidate(self, path: str) -> None:
        """Forget ``path``'s settings, also those being read now."""
        self._entries.pop(path, None)
        counter = self._reading.get(path)
        if counter is not None:
            counter[0] += 1

    def clear(self) -> None:
        """Forget every container's settings, also those being read now."""
        self._entries.clear()
        self._epoch += 1

    def __contains__(self, path: str) -> bool:
        return path in self._entries

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["SettingsCache"]
