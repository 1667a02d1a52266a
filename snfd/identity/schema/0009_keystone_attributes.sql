-- What Keystone keeps beside the Astakos model: a project's tags, and the
-- extra properties of a user (any key Keystone's API does not define is
-- stored and shown back, as Keystone does).
ALTER TABLE identity_projects ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
ALTER TABLE identity_users ADD COLUMN extra jsonb NOT NULL DEFAULT '{}';

-- ``manager`` (Keystone's project manager role) can be granted on a project,
-- to a user or a group.
ALTER TABLE identity_memberships
    DROP CONSTRAINT identity_memberships_roles_check,
    ADD CONSTRAINT identity_memberships_roles_check
        CHECK (roles <@ ARRAY['admin', 'manager', 'member', 'reader', 'service',
                              'ResellerAdmin']::text[]);
ALTER TABLE identity_group_roles
    DROP CONSTRAINT identity_group_roles_role_check,
    ADD CONSTRAINT identity_group_roles_role_check
        CHECK (role IN ('manager', 'member', 'reader', 'service', 'ResellerAdmin'));
