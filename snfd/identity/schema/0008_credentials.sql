-- Keystone's generic credential store (/v3/credentials).
--
-- A credential of type ``ec2`` is an EC2 credential (the OS-EC2 table):
-- its id is the hex SHA-256 of its access key, as Keystone makes it.  Any
-- other type lives here, its blob stored encrypted (AES-GCM, nonce ||
-- ciphertext, the id as associated data) with the node's credential key.
CREATE TABLE identity_credentials (
    id          text PRIMARY KEY,
    user_uuid   uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    project     uuid,
    type        text NOT NULL,
    blob        bytea NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX identity_credentials_user ON identity_credentials (user_uuid);

ALTER TABLE identity_ec2_credentials ADD COLUMN id text;
UPDATE identity_ec2_credentials SET id = encode(sha256(convert_to(access, 'UTF8')), 'hex');
ALTER TABLE identity_ec2_credentials ALTER COLUMN id SET NOT NULL,
    ADD CONSTRAINT identity_ec2_credentials_id UNIQUE (id);
