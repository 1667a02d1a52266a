"""Thin copy-on-write block volumes served over NBD (Archipelago).

- ``mapfile``: volume maps in Archipelago's v2 format, and Pithos
  hashmaps read as v0 maps (pure).
- ``volumes``: the volume store: volumes cloned from images or snapshots
  with no data copied, copy-on-write, zero objects, snapshots; maps stored
  as blocks of the node's block store behind an atomic per-volume pointer.
- ``io``: the protocols the NBD server and the volume store meet through.
- ``nbd``: the NBD server (fixed newstyle; one shared open volume per node
  for all its connections).

Not yet wired into a node (no plugin listens, no API makes volumes), and
Pithos' garbage collection does not yet spare the blocks live maps need
(``VolumeStore.referenced``): both come with the rest of issue 16.
"""
