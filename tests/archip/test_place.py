"""The node's directory as a volume place (``snfd.archip.place``): the
interface, and the layout on disk that stores made before places existed
wrote (``test_rados_volumes`` holds the RADOS place to the same)."""

from __future__ import annotations

import json
import os

from twisted.internet import reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd.archip import mapfile
from snfd.archip.place import FileVolumePlace, IVolumePlace, Pointer
from snfd.archip.volumes import VolumeStore
from snfd.pithos.blocks import FileBlockStore

BS = 64 * 1024


class FilePlaceTests(unittest.TestCase):
    def test_interface(self) -> None:
        verifyObject(IVolumePlace, FileVolumePlace(self.mktemp(), BS))

    async def test_layout(self) -> None:
        """A pointer is ``maps/<volume>``, JSON of format 1; an owned object
        ``objects/<name>`` of ``block_size`` bytes; a floor
        ``epochs/<volume>`` in decimal; versions and fences stay 0."""
        root = self.mktemp()
        blocks = FileBlockStore(os.path.join(root, "blocks"), reactor, block_size=BS)
        store = VolumeStore(os.path.join(root, "volumes"), blocks, reactor)
        await store.create("vol", 2 * BS)
        v = await store.open("vol", True)
        await v.write(BS + 1, b"x")
        await v.close()
        with open(os.path.join(root, "volumes", "maps", "vol"), "rb") as f:
            pointer = json.loads(f.read())
        self.assertEqual(list(pointer), ["version", "length", "blocks"])
        self.assertEqual(pointer["version"], 1)
        self.assertEqual(store.place.read_pointer_now("vol"),
                         Pointer(tuple(pointer["blocks"]), pointer["length"]))
        owned = mapfile.owned_name("vol", 0, 1)
        self.assertEqual(os.path.getsize(os.path.join(root, "volumes", "objects", owned)),
                         BS)
        await store.snapshot("vol", "snap")
        await store.remove("vol")
        with open(os.path.join(root, "volumes", "epochs", "vol"), "rb") as f:
            self.assertEqual(f.read(), b"2")
        self.assertEqual(store.place.floors_now(), {"vol": 2})
