-- One-time codes of native applications' browser logins (RFC 8252 with
-- PKCE, RFC 7636; ``snf login --provider``).
--
-- A login started with a loopback ``next`` ends in a redirect there with a
-- code, not a token; the application trades the code and its PKCE verifier
-- for the token (``POST /ui/token/exchange``).  Only the SHA-256 of the code
-- is stored, with the S256 challenge the login was started with and the
-- methods the token will carry.  A code lives a minute and is deleted by
-- the exchange that reads it, so it works once, on whichever node.
CREATE TABLE identity_login_codes (
    hash        bytea PRIMARY KEY,
    user_uuid   uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    challenge   text NOT NULL,
    methods     text[] NOT NULL,
    provider    text NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX identity_login_codes_expires ON identity_login_codes (expires_at);
