-- Keystone's role assignments over the Astakos model.
--
-- A user's roles on a project live on the user's membership of that
-- Synnefo project: ``member`` (the default, what every Synnefo membership
-- was), ``reader`` (enrolled, quota granted, read-only by Keystone's
-- policies) and ``service``.  ``admin`` is not stored here: it is the
-- user's Astakos administrator flag (``identity_users.is_admin``), which is
-- global.  An accepted membership with no role left is one held only
-- through a group's grant (or an administrator's).
ALTER TABLE identity_memberships
    ADD COLUMN roles text[] NOT NULL DEFAULT '{member}'
        CHECK (roles <@ ARRAY['member', 'reader', 'service']::text[]);

-- Groups get the id and description Keystone shows; a renamed group keeps
-- its members.
ALTER TABLE identity_groups
    ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    ADD COLUMN description text NOT NULL DEFAULT '';
ALTER TABLE identity_user_groups
    DROP CONSTRAINT identity_user_groups_group_name_fkey,
    ADD CONSTRAINT identity_user_groups_group_name_fkey FOREIGN KEY (group_name)
        REFERENCES identity_groups (name) ON DELETE CASCADE ON UPDATE CASCADE;

-- Roles granted to a group on a project: every member of the group holds
-- them there (and is enrolled in the project while it does).
CREATE TABLE identity_group_roles (
    group_id  uuid NOT NULL REFERENCES identity_groups (id) ON DELETE CASCADE,
    project   uuid NOT NULL REFERENCES identity_projects (id) ON DELETE CASCADE,
    role      text NOT NULL CHECK (role IN ('member', 'reader', 'service')),
    PRIMARY KEY (group_id, project, role)
);
CREATE INDEX identity_group_roles_project ON identity_group_roles (project);
