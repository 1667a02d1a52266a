-- The quota holder: resources, holdings and the commission protocol.

CREATE TABLE identity_resources (
    name               text PRIMARY KEY,
    description        text NOT NULL DEFAULT '',
    unit               text,
    service_type       text NOT NULL,
    service_origin     text NOT NULL,
    ui_visible         boolean NOT NULL DEFAULT true,
    api_visible        boolean NOT NULL DEFAULT true,
    allow_in_projects  boolean NOT NULL DEFAULT true,
    -- limits given to each user's base (system) project
    base_default       bigint NOT NULL DEFAULT 0 CHECK (base_default >= 0),
    -- member capacity in other projects when an application leaves it out
    project_default    bigint NOT NULL DEFAULT 0 CHECK (project_default >= 0)
);

-- (holder, source, resource): holder "user:<uuid>" with source
-- "project:<uuid>", or holder "project:<uuid>" with source '' (NULL in the
-- API).  Pending imports raise usage_max; pending releases lower usage_min.
CREATE TABLE identity_holdings (
    holder     text NOT NULL,
    source     text NOT NULL DEFAULT '',
    resource   text NOT NULL REFERENCES identity_resources (name),
    "limit"    bigint NOT NULL CHECK ("limit" >= 0),
    usage_min  bigint NOT NULL DEFAULT 0 CHECK (usage_min >= 0),
    usage_max  bigint NOT NULL DEFAULT 0 CHECK (usage_max >= 0),
    PRIMARY KEY (holder, source, resource),
    CHECK (usage_min <= usage_max)
);
CREATE INDEX identity_holdings_source ON identity_holdings (source, resource);

CREATE TABLE identity_commissions (
    serial      bigserial PRIMARY KEY,
    clientkey   text NOT NULL,
    name        text NOT NULL DEFAULT '',
    issue_time  timestamptz NOT NULL
);
CREATE INDEX identity_commissions_client ON identity_commissions (clientkey, serial);

CREATE TABLE identity_provisions (
    serial    bigint NOT NULL REFERENCES identity_commissions (serial) ON DELETE CASCADE,
    holder    text NOT NULL,
    source    text NOT NULL DEFAULT '',
    resource  text NOT NULL,
    quantity  bigint NOT NULL,
    PRIMARY KEY (serial, holder, source, resource)
);

CREATE TABLE identity_provision_log (
    id          bigserial PRIMARY KEY,
    serial      bigint NOT NULL,
    name        text NOT NULL,
    issue_time  timestamptz NOT NULL,
    log_time    timestamptz NOT NULL,
    holder      text NOT NULL,
    source      text NOT NULL,
    resource    text NOT NULL,
    "limit"     bigint NOT NULL,
    usage_min   bigint NOT NULL,
    usage_max   bigint NOT NULL,
    quantity    bigint NOT NULL,
    reason      text NOT NULL
);
