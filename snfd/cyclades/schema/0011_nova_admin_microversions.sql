-- Nova's admin APIs at later microversions (compute 2.16-2.66).
--
-- Aggregates show a uuid from 2.41, migrations from 2.59 (also their
-- paging marker); both are made once and never change.
ALTER TABLE cyclades_aggregates ADD COLUMN uuid uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX cyclades_aggregates_uuid ON cyclades_aggregates (uuid);
ALTER TABLE cyclades_migrations ADD COLUMN uuid uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX cyclades_migrations_uuid ON cyclades_migrations (uuid);
-- A live migration aborted while its Ganeti job was still queued (2.65):
-- the job was cancelled, the migration shows "cancelled".
ALTER TABLE cyclades_migrations ADD COLUMN cancelled boolean NOT NULL DEFAULT false;

-- A server group's rules (2.64): {"max_server_per_host": N} for an
-- anti-affinity group, else none.
ALTER TABLE cyclades_server_groups ADD COLUMN rules jsonb NOT NULL DEFAULT '{}';
