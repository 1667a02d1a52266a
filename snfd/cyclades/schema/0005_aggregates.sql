-- Nova's host aggregates: named groups of backends (Ganeti clusters) with
-- metadata; an aggregate's availability zone names the zone its backends
-- serve (os-availability-zone, and "availability_zone" on create).
CREATE TABLE cyclades_aggregates (
    id                serial PRIMARY KEY,
    name              text NOT NULL,
    availability_zone text,
    metadata          jsonb NOT NULL DEFAULT '{}',
    created           timestamptz NOT NULL DEFAULT now(),
    updated           timestamptz
);
CREATE UNIQUE INDEX cyclades_aggregates_name ON cyclades_aggregates (name);

CREATE TABLE cyclades_aggregate_hosts (
    aggregate_id integer NOT NULL REFERENCES cyclades_aggregates (id) ON DELETE CASCADE,
    backend_id   integer NOT NULL REFERENCES cyclades_backends (id) ON DELETE CASCADE,
    PRIMARY KEY (aggregate_id, backend_id)
);
