"""Thin copy-on-write block volumes served over NBD (Archipelago).

- ``mapfile``: volume maps in Archipelago's v2 format, and Pithos
  hashmaps read as v0 maps (pure).
- ``volumes``: the volume store: volumes cloned from images or snapshots
  with no data copied, copy-on-write, zero objects, snapshots, growth;
  maps stored as blocks of the node's block store behind an atomic
  per-volume pointer.
- ``place``: where the store keeps pointers and owned objects
  (``IVolumePlace``; compare-and-swap and the writer fence), the node's
  directory (``FileVolumePlace``), and ``copy_volumes`` between places.
- ``rados_volumes``: the same in a RADOS pool every node shares.
- ``io``: the protocols the NBD server and the volume store meet through.
- ``nbd``: the NBD server (fixed newstyle; one shared open volume per node
  for all its connections).
- ``api``: ``/archip/v1``, what Ganeti's ExtStorage provider
  ``archipelago`` (``share/ganeti/extstorage/archipelago``) calls.
- ``service``: the node's volume service (plugin ``archip``): the store,
  ``IVolumes`` for the compute service, the NBD listener, and its maps
  registered with Pithos' garbage collection (``IBlockReferences``).

The compute service's volumes (Cinder's API) are in ``snfd.cyclades.volumes``.
See docs/archipelago.md.
"""
