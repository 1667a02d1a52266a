"""The volume service (Cyclades' volumes, Cinder's API v3 on Synnefo's
semantics; reference 3.4): volume types, thin volumes of the volume
service (``IVolumes``, Archipelago), attachments as Ganeti disks, and
snapshots published as images.

- ``model``: the values (``VolumeType``, ``Volume``, ``Snapshot``);
- ``store``: the SQL;
- ``service``: what requests do (``Volumes``): quota through the
  commission runner, maps through ``IVolumes``, disks through RAPI, and
  the update path's half (``sync_disks_txn``);
- ``api``: the ``/volume`` HTTP routes and Cinder's JSON.
"""
