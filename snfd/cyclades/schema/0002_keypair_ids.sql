-- Keypairs get a numeric id: Nova's keypair view shows one (compute v2.1).
ALTER TABLE cyclades_keypairs ADD COLUMN id bigserial;
