-- The compute service (Cyclades): Ganeti backends, flavors, servers with
-- their NICs and disks as Ganeti reports them, diagnostics, keypairs, and
-- the one-time server parameters snf-image fetches.

-- One Ganeti cluster reached over RAPI.  Statistics (mfree...) are the
-- sums over its vm_capable, online, undrained nodes, refreshed from
-- /2/nodes?bulk=1 and decremented at once by each allocation.
CREATE TABLE cyclades_backends (
    id              serial PRIMARY KEY,
    clustername     text NOT NULL UNIQUE,
    rapi_url        text NOT NULL,
    username        text NOT NULL DEFAULT '',
    password        text NOT NULL DEFAULT '',
    certificate     text NOT NULL DEFAULT '',       -- PEM pinned; '' = system trust
    offline         boolean NOT NULL DEFAULT false,
    drained         boolean NOT NULL DEFAULT false,
    public          boolean NOT NULL DEFAULT true,  -- any project may use it
    projects        text[] NOT NULL DEFAULT '{}',   -- projects it is assigned to
    disk_templates  text[] NOT NULL DEFAULT '{}',
    hypervisor      text NOT NULL DEFAULT 'kvm',
    -- where its job events come from: 'watch' (ganeti-events plugin on its
    -- master publishes) or 'poll' (the leader polls /2/jobs over RAPI)
    events          text NOT NULL DEFAULT 'watch' CHECK (events IN ('watch', 'poll')),
    mfree           bigint NOT NULL DEFAULT 0,      -- MiB
    mtotal          bigint NOT NULL DEFAULT 0,
    dfree           bigint NOT NULL DEFAULT 0,      -- MiB
    dtotal          bigint NOT NULL DEFAULT 0,
    pinst_cnt       integer NOT NULL DEFAULT 0,
    ctotal          integer NOT NULL DEFAULT 0,
    stats_updated   timestamptz NOT NULL DEFAULT '-infinity',
    created         timestamptz NOT NULL DEFAULT now()
);

-- Flavors are unique on (cpu, ram, disk, template); never deleted while a
-- server uses them (deleted only hides them from creation).
CREATE TABLE cyclades_flavors (
    id              serial PRIMARY KEY,
    cpu             integer NOT NULL CHECK (cpu > 0),
    ram             integer NOT NULL CHECK (ram > 0),       -- MiB
    disk            integer NOT NULL CHECK (disk >= 0),     -- GiB
    disk_template   text NOT NULL,
    allow_create    boolean NOT NULL DEFAULT true,
    public          boolean NOT NULL DEFAULT true,
    access          text[] NOT NULL DEFAULT '{}',   -- projects of a private flavor
    deleted         boolean NOT NULL DEFAULT false,
    UNIQUE (cpu, ram, disk, disk_template)
);

-- A server.  operstate is the internal state (BUILD, ERROR, STOPPED,
-- STARTED, DESTROYED, RESIZE); the API status derives from it and the
-- pending job (snfd.cyclades.model.api_status).  backendtime is the time of
-- the newest Ganeti event applied: older or equal events are ignored.
CREATE TABLE cyclades_servers (
    id                  bigserial PRIMARY KEY,
    userid              text NOT NULL,
    project             text NOT NULL,
    shared_to_project   boolean NOT NULL DEFAULT false,
    name                text NOT NULL,
    flavor_id           integer NOT NULL REFERENCES cyclades_flavors (id),
    image_id            text NOT NULL,
    image               jsonb NOT NULL DEFAULT '{}',    -- what was used: name, checksum...
    backend_id          integer REFERENCES cyclades_backends (id),
    operstate           text NOT NULL DEFAULT 'BUILD',
    deleted             boolean NOT NULL DEFAULT false,
    suspended           boolean NOT NULL DEFAULT false,
    rescue              boolean NOT NULL DEFAULT false,
    action              text NOT NULL DEFAULT '',       -- the user's last request (DESTROY...)
    task                text NOT NULL DEFAULT '',       -- BUILD, START, STOP, REBOOT, RESIZE...
    task_job_id         bigint,
    serial              bigint,                         -- quota serial of the pending task
    backendjobid        bigint,
    backendopcode       text NOT NULL DEFAULT '',
    backendjobstatus    text NOT NULL DEFAULT '',
    backendlogmsg       text NOT NULL DEFAULT '',
    backendtime         timestamptz NOT NULL DEFAULT '-infinity',
    buildpercentage     integer NOT NULL DEFAULT 0,
    metadata            jsonb NOT NULL DEFAULT '{}',
    tags                text[] NOT NULL DEFAULT '{}',
    key_names           text[] NOT NULL DEFAULT '{}',
    -- Ganeti's view, synced when a job finalizes: [{id, name, network, ip,
    -- mac, mode, link, uuid, firewall}] and [{id, name, size, uuid}]
    nics                jsonb NOT NULL DEFAULT '[]',
    disks               jsonb NOT NULL DEFAULT '[]',
    created             timestamptz NOT NULL DEFAULT now(),
    updated             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_servers_user ON cyclades_servers (userid, id);
CREATE INDEX cyclades_servers_updated ON cyclades_servers (userid, updated);
CREATE INDEX cyclades_servers_backend ON cyclades_servers (backend_id) WHERE NOT deleted;

-- What snf-image and the operator see about a server, newest last.
CREATE TABLE cyclades_diagnostics (
    id              bigserial PRIMARY KEY,
    server_id       bigint NOT NULL REFERENCES cyclades_servers (id) ON DELETE CASCADE,
    level           text NOT NULL,          -- DEBUG, INFO, WARNING, ERROR
    source          text NOT NULL,
    source_date     timestamptz,
    message         text NOT NULL,
    details         text,
    created         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_diagnostics_server ON cyclades_diagnostics (server_id, id);

CREATE TABLE cyclades_keypairs (
    userid          text NOT NULL,
    name            text NOT NULL,
    public_key      text NOT NULL,
    fingerprint     text NOT NULL,
    created         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (userid, name)
);

-- The secrets of a build (password, personality, keys), fetched once by the
-- OS definition through /compute/v2.0/server-params/<key> and then deleted.
-- The admin password of a new server is also kept a while for
-- GET /servers/<id>/password.
CREATE TABLE cyclades_server_params (
    key             text PRIMARY KEY,
    server_id       bigint NOT NULL REFERENCES cyclades_servers (id) ON DELETE CASCADE,
    params          jsonb NOT NULL,
    created         timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE cyclades_server_passwords (
    server_id       bigint PRIMARY KEY REFERENCES cyclades_servers (id) ON DELETE CASCADE,
    password        text NOT NULL,
    expires         timestamptz NOT NULL
);
