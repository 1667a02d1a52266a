-- Identity: users, linked login identities, tokens, groups, components.

CREATE TABLE identity_users (
    uuid              uuid PRIMARY KEY,
    email             text NOT NULL,
    first_name        text NOT NULL DEFAULT '',
    last_name         text NOT NULL DEFAULT '',
    -- pending_verification -> pending_moderation -> active; rejected; deactivated
    state             text NOT NULL CHECK (state IN ('pending_verification',
                          'pending_moderation', 'active', 'rejected', 'deactivated')),
    is_admin          boolean NOT NULL DEFAULT false,
    -- argon2 encoded hash of the local password; NULL: no local password
    password_hash     text,
    -- SHA-256 of the one-time email verification code
    verification_hash bytea UNIQUE,
    verification_sent timestamptz,
    verified_at       timestamptz,
    moderated_at      timestamptz,
    activated_at      timestamptz,
    state_reason      text NOT NULL DEFAULT '',
    default_project   uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX identity_users_email ON identity_users (lower(email));

-- Login identities from providers (local, ldap, shibboleth, ...); a user
-- may link several.  ``identifier`` is the provider's stable id for the
-- person (the email for local, the LDAP DN, the EPPN).
CREATE TABLE identity_auth_links (
    provider    text NOT NULL,
    identifier  text NOT NULL,
    user_uuid   uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    info        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, identifier)
);
CREATE INDEX identity_auth_links_user ON identity_auth_links (user_uuid);

-- Tokens are stored only as SHA-256 hashes.  ``primary`` marks the user's
-- long-lived API token (the one `user-renew-token` replaces); Keystone v3
-- issues further tokens, each with its own scope.  Renewal and
-- deactivation delete every token of the user.
CREATE TABLE identity_tokens (
    hash        bytea PRIMARY KEY,
    user_uuid   uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    is_primary  boolean NOT NULL DEFAULT false,
    project     uuid,
    methods     text[] NOT NULL DEFAULT '{}',
    audit_id    text NOT NULL,
    audit_chain text,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX identity_tokens_user ON identity_tokens (user_uuid);
CREATE INDEX identity_tokens_expires ON identity_tokens (expires_at);
CREATE UNIQUE INDEX identity_tokens_one_primary ON identity_tokens (user_uuid)
    WHERE is_primary;

-- User groups (Synnefo's Django groups): shown as roles in token replies.
CREATE TABLE identity_groups (
    name  text PRIMARY KEY
);
CREATE TABLE identity_user_groups (
    user_uuid   uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    group_name  text NOT NULL REFERENCES identity_groups (name) ON DELETE CASCADE,
    PRIMARY KEY (user_uuid, group_name)
);

-- Components (services such as pithos, cyclades) and their service tokens.
CREATE TABLE identity_components (
    name        text PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    base_url    text NOT NULL DEFAULT '',
    ui_url      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Failed logins, counted per key ("account:<email>", "address:<ip>") in a
-- sliding window; a key over its limit is refused until the window passes.
CREATE TABLE identity_login_failures (
    key         text NOT NULL,
    failed_at   timestamptz NOT NULL
);
CREATE INDEX identity_login_failures_key ON identity_login_failures (key, failed_at);

CREATE TABLE identity_feedback (
    id          bigserial PRIMARY KEY,
    user_uuid   uuid NOT NULL,
    message     text NOT NULL,
    data        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
