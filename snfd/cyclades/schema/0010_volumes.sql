-- Volumes (Cinder's API on Synnefo's semantics): volume types naming a
-- Ganeti disk template, volumes (each an Archipelago map named
-- snf-vol-<id> for ext_archipelago types, a Ganeti disk of its server
-- while attached), and snapshots (frozen maps published as image files
-- in the owner's "snapshots" container).
CREATE TABLE cyclades_volume_types (
    id                  serial PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    disk_template       text NOT NULL,
    description         text NOT NULL DEFAULT '',
    deleted             boolean NOT NULL DEFAULT false,
    created             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cyclades_volumes (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    userid              text NOT NULL,
    project             text NOT NULL,
    size                integer NOT NULL CHECK (size > 0),       -- GiB
    volume_type_id      integer NOT NULL REFERENCES cyclades_volume_types (id),
    source              text NOT NULL DEFAULT '',   -- image:<id>, snapshot:<id>, volume:<id>
    server_id           bigint REFERENCES cyclades_servers (id),
    device              text NOT NULL DEFAULT '',
    delete_on_termination boolean NOT NULL DEFAULT false,
    bootable            boolean NOT NULL DEFAULT false,
    -- false for a boot volume made with its server: the server's
    -- cyclades.disk (its flavor's disk) covers it
    charged             boolean NOT NULL DEFAULT true,
    -- creating, available, attaching, in-use, detaching, deleting, error
    status              text NOT NULL DEFAULT 'creating',
    job_id              bigint,
    serial              bigint,                    -- a pending commission
    metadata            jsonb NOT NULL DEFAULT '{}',
    deleted             boolean NOT NULL DEFAULT false,
    revision            bigint NOT NULL DEFAULT 0,
    created             timestamptz NOT NULL DEFAULT now(),
    updated             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_volumes_user ON cyclades_volumes (userid) WHERE NOT deleted;
CREATE INDEX cyclades_volumes_server ON cyclades_volumes (server_id) WHERE server_id IS NOT NULL;

CREATE TABLE cyclades_snapshots (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    userid              text NOT NULL,
    project             text NOT NULL,
    volume_id           uuid NOT NULL,
    size                integer NOT NULL,          -- GiB
    -- creating, available, deleting, error
    status              text NOT NULL DEFAULT 'creating',
    image_id            text NOT NULL DEFAULT '',  -- the image file's uuid once published
    metadata            jsonb NOT NULL DEFAULT '{}',
    deleted             boolean NOT NULL DEFAULT false,
    revision            bigint NOT NULL DEFAULT 0,
    created             timestamptz NOT NULL DEFAULT now(),
    updated             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_snapshots_user ON cyclades_snapshots (userid) WHERE NOT deleted;
