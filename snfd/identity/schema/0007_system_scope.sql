-- Roles on the system, and tokens scoped to it (Keystone's system scope).
--
-- ``reader`` and ``member`` on the system are stored here: they let a user
-- read (reader) the whole identity administration API with a token scoped
-- to the system, as Keystone's ``system_reader`` does.  ``admin`` on the
-- system is the Astakos administrator flag itself (``is_admin``), so it
-- has no row: every administrator holds it.
CREATE TABLE identity_system_roles (
    user_uuid uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    role      text NOT NULL CHECK (role IN ('member', 'reader')),
    PRIMARY KEY (user_uuid, role)
);

ALTER TABLE identity_tokens ADD COLUMN system boolean NOT NULL DEFAULT false;
