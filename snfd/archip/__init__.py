"""Thin copy-on-write block volumes served over NBD (Archipelago).

- ``mapfile``: volume maps in Archipelago's v2 format, and Pithos
  hashmaps read as v0 maps (pure).
- ``volumes``: the volume store: volumes cloned from images or snapshots
  with no data copied, copy-on-write, zero objects, snapshots; maps stored
  as blocks of the node's block store behind an atomic per-volume pointer.
- ``io``: the protocols the NBD server and the volume store meet through.
"""
