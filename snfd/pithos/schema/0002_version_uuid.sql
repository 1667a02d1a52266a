-- Images (snfd.cyclades.images) find a file by its uuid, which every
-- version of one object shares.
CREATE INDEX pithos_versions_uuid ON pithos_versions (uuid);
