-- Cluster membership and leadership of the snfd nodes sharing this database.

CREATE TABLE nodes (
    id              text PRIMARY KEY,
    address         text NOT NULL,
    plugins         text[] NOT NULL,
    started_at      timestamptz NOT NULL,
    last_heartbeat  timestamptz NOT NULL,
    stopped_at      timestamptz
);

-- The single row holding the current leadership term.  Leader-only writes
-- lock it FOR SHARE and compare epochs (fencing); a new term increments it.
CREATE TABLE cluster_leader (
    id       smallint PRIMARY KEY CHECK (id = 1),
    epoch    bigint NOT NULL,
    node_id  text,
    since    timestamptz
);
INSERT INTO cluster_leader (id, epoch) VALUES (1, 0);

-- Every term ever started, for audits and failover measurements.
CREATE TABLE cluster_terms (
    epoch       bigint PRIMARY KEY,
    node_id     text NOT NULL,
    started_at  timestamptz NOT NULL
);
