-- What Keystone keeps beside the Astakos model: a project's tags, and the
-- extra properties of a user (any key Keystone's API does not define is
-- stored and shown back, as Keystone does).
ALTER TABLE identity_projects ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
ALTER TABLE identity_users ADD COLUMN extra jsonb NOT NULL DEFAULT '{}';
