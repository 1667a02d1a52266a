-- Application credentials (with their access rules) and EC2 credentials.

-- A user's delegation of some of its roles on one project to an
-- application.  The secret is stored only as an argon2id hash.
CREATE TABLE identity_app_credentials (
    id            uuid PRIMARY KEY,
    user_uuid     uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    project       uuid NOT NULL,
    name          text NOT NULL,
    description   text,
    secret_hash   text NOT NULL,
    roles         text[] NOT NULL,
    unrestricted  boolean NOT NULL DEFAULT false,
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_uuid, name)
);
CREATE INDEX identity_app_credentials_project ON identity_app_credentials (project);

-- Access rules belong to the user and are shared by identical rules of its
-- credentials; a rule still used by a credential cannot be deleted.
CREATE TABLE identity_access_rules (
    id         uuid PRIMARY KEY,
    user_uuid  uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    service    text NOT NULL,
    method     text NOT NULL,
    path       text NOT NULL,
    UNIQUE (user_uuid, service, method, path)
);
CREATE TABLE identity_app_credential_rules (
    credential  uuid NOT NULL REFERENCES identity_app_credentials (id) ON DELETE CASCADE,
    rule        uuid NOT NULL REFERENCES identity_access_rules (id),
    PRIMARY KEY (credential, rule)
);
CREATE INDEX identity_app_credential_rules_rule ON identity_app_credential_rules (rule);

-- A token issued from an application credential ends with it.
ALTER TABLE identity_tokens ADD COLUMN app_credential uuid
    REFERENCES identity_app_credentials (id) ON DELETE CASCADE;
CREATE INDEX identity_tokens_app_credential ON identity_tokens (app_credential)
    WHERE app_credential IS NOT NULL;

-- EC2 credentials: the access key is an identifier; the secret must be
-- shown again (the API returns it), so it is stored encrypted (AES-GCM,
-- nonce || ciphertext) with a key kept outside the database.
CREATE TABLE identity_ec2_credentials (
    access      text PRIMARY KEY,
    user_uuid   uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    project     uuid NOT NULL,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identity_ec2_credentials_user ON identity_ec2_credentials (user_uuid);
