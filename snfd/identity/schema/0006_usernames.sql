-- Login names apart from emails, and Swift's reseller administrator role.
--
-- Keystone users have a name and, optionally, an email; Astakos users had
-- only the email.  ``username`` is the Keystone name of a user who has
-- one (users made through Keystone's API, ``snf-manage user-add
-- --username``); a user without one is named by its email.  A user needs
-- at least one of the two.  Both are unique without regard to case, and
-- the store keeps a username from being another user's email (and the
-- other way round), so a password login by either names one user.
ALTER TABLE identity_users
    ADD COLUMN username text,
    ALTER COLUMN email DROP NOT NULL,
    ADD CONSTRAINT identity_users_named CHECK (email IS NOT NULL OR username IS NOT NULL);
CREATE UNIQUE INDEX identity_users_username ON identity_users (lower(username));

-- ``ResellerAdmin`` can be granted on a project, to a user or a group: the
-- object store's reseller administrators (they set account quotas).  A
-- membership also records the projects ``admin`` was granted on: the
-- administrator flag (global) holds while any such grant remains.
ALTER TABLE identity_memberships
    DROP CONSTRAINT identity_memberships_roles_check,
    ADD CONSTRAINT identity_memberships_roles_check
        CHECK (roles <@ ARRAY['admin', 'member', 'reader', 'service',
                              'ResellerAdmin']::text[]);
ALTER TABLE identity_group_roles
    DROP CONSTRAINT identity_group_roles_role_check,
    ADD CONSTRAINT identity_group_roles_role_check
        CHECK (role IN ('member', 'reader', 'service', 'ResellerAdmin'));
