-- Nova's server groups, instance actions and migrations.
--
-- Server groups: a project's named set of servers with one placement
-- policy (affinity, anti-affinity and their soft variants); a server is in
-- at most one group, given when it is created.
CREATE TABLE cyclades_server_groups (
    id          text PRIMARY KEY,               -- a UUID, as Nova's
    userid      text NOT NULL,
    project     text NOT NULL,
    name        text NOT NULL,
    policy      text NOT NULL,
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_server_groups_project ON cyclades_server_groups (project);

ALTER TABLE cyclades_servers
    ADD COLUMN server_group text REFERENCES cyclades_server_groups (id) ON DELETE SET NULL;
CREATE INDEX cyclades_servers_group ON cyclades_servers (server_group)
    WHERE server_group IS NOT NULL AND NOT deleted;

-- Nova's instance actions: what each request did to a server (one row per
-- server and request id), and the Ganeti job it submitted, if any.
CREATE TABLE cyclades_instance_actions (
    server_id   bigint NOT NULL REFERENCES cyclades_servers (id) ON DELETE CASCADE,
    request_id  text NOT NULL,
    action      text NOT NULL,
    userid      text NOT NULL,
    project     text NOT NULL,
    job_id      bigint,
    start_time  timestamptz NOT NULL,
    PRIMARY KEY (server_id, request_id)
);

-- The opcodes of a server's Ganeti jobs as the update path saw them: the
-- events of the instance action that submitted the job.
CREATE TABLE cyclades_job_events (
    server_id   bigint NOT NULL REFERENCES cyclades_servers (id) ON DELETE CASCADE,
    job_id      bigint NOT NULL,
    opcode      text NOT NULL,
    start_time  timestamptz NOT NULL,
    finish_time timestamptz,
    result      text,
    PRIMARY KEY (server_id, job_id, opcode)
);

-- Moves of servers between the Ganeti nodes of their cluster that an
-- administrator asked for (Nova's os-migrations): live migration, cold
-- migration (failover) and evacuation; their state is their job's events.
CREATE TABLE cyclades_migrations (
    id              bigserial PRIMARY KEY,
    server_id       bigint NOT NULL REFERENCES cyclades_servers (id) ON DELETE CASCADE,
    job_id          bigint,
    kind            text NOT NULL,          -- live-migration, migration, evacuation
    source_compute  text NOT NULL,          -- the backend (cluster name)
    source_node     text,                   -- the Ganeti node it left
    dest_node       text,                   -- the node asked for (NULL: Ganeti chose)
    flavor_id       integer NOT NULL,
    created         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_migrations_server ON cyclades_migrations (server_id);
