-- What Nova's compute API (v2.1) shows beside Synnefo's: a keypair's
-- number, and the access addresses a user sets on a server (accessIPv4,
-- accessIPv6; "" when unset).
ALTER TABLE cyclades_keypairs ADD COLUMN id bigserial;
ALTER TABLE cyclades_servers
    ADD COLUMN access_ipv4 text NOT NULL DEFAULT '',
    ADD COLUMN access_ipv6 text NOT NULL DEFAULT '';
