-- Projects, their applications and memberships.  Each user's base
-- (system) project has the user's uuid as its id.

CREATE TABLE identity_projects (
    id                 uuid PRIMARY KEY,
    state              text NOT NULL CHECK (state IN ('uninitialized', 'active',
                           'suspended', 'terminated', 'deleted')),
    name               text NOT NULL,
    owner              uuid,
    homepage           text NOT NULL DEFAULT '',
    description        text NOT NULL DEFAULT '',
    start_date         timestamptz,
    end_date           timestamptz,
    join_policy        text NOT NULL DEFAULT 'moderated'
                           CHECK (join_policy IN ('auto', 'moderated', 'closed')),
    leave_policy       text NOT NULL DEFAULT 'auto'
                           CHECK (leave_policy IN ('auto', 'moderated', 'closed')),
    max_members        bigint,
    private            boolean NOT NULL DEFAULT false,
    system_project     boolean NOT NULL DEFAULT false,
    creation_date      timestamptz NOT NULL DEFAULT now(),
    deactivation_date  timestamptz,
    last_application   bigint
);
CREATE INDEX identity_projects_owner ON identity_projects (owner);
CREATE UNIQUE INDEX identity_projects_live_name ON identity_projects (name)
    WHERE state IN ('active', 'suspended') AND NOT system_project;

CREATE TABLE identity_project_resources (
    project           uuid NOT NULL REFERENCES identity_projects (id) ON DELETE CASCADE,
    resource          text NOT NULL REFERENCES identity_resources (name),
    project_capacity  bigint NOT NULL CHECK (project_capacity >= 0),
    member_capacity   bigint NOT NULL CHECK (member_capacity >= 0),
    PRIMARY KEY (project, resource)
);

CREATE TABLE identity_project_applications (
    id             bigserial PRIMARY KEY,
    project        uuid NOT NULL REFERENCES identity_projects (id) ON DELETE CASCADE,
    -- pending, approved, replaced, denied, dismissed, cancelled
    state          text NOT NULL,
    applicant      uuid NOT NULL,
    owner          uuid NOT NULL,
    name           text NOT NULL,
    homepage       text NOT NULL DEFAULT '',
    description    text NOT NULL DEFAULT '',
    comments       text NOT NULL DEFAULT '',
    start_date     timestamptz,
    end_date       timestamptz,
    join_policy    text NOT NULL,
    leave_policy   text NOT NULL,
    max_members    bigint,
    private        boolean NOT NULL DEFAULT false,
    resources      jsonb NOT NULL DEFAULT '{}',
    issue_date     timestamptz NOT NULL DEFAULT now(),
    response_date  timestamptz,
    response       text NOT NULL DEFAULT '',
    response_actor uuid
);
CREATE INDEX identity_project_applications_project ON identity_project_applications (project);

CREATE TABLE identity_memberships (
    id         bigserial PRIMARY KEY,
    project    uuid NOT NULL REFERENCES identity_projects (id) ON DELETE CASCADE,
    user_uuid  uuid NOT NULL REFERENCES identity_users (uuid) ON DELETE CASCADE,
    -- requested, accepted, leave_requested, suspended, rejected, cancelled, removed
    state      text NOT NULL,
    requested  timestamptz,
    accepted   timestamptz,
    removed    timestamptz,
    UNIQUE (project, user_uuid)
);
CREATE INDEX identity_memberships_user ON identity_memberships (user_uuid);
