-- Neutron's security groups: a project's named sets of allow rules, and
-- which of them each port is in (cyclades_ports.security_groups, the
-- groups' ids).  Every project has one group named "default", made on
-- first use, with Neutron's default rules.  A rule's remote is a CIDR or
-- another group (its members' addresses); deleting a group deletes the
-- rules that name it as their remote, as Neutron does.
CREATE TABLE cyclades_security_groups (
    id          text PRIMARY KEY,               -- a UUID, as Neutron's
    project     text NOT NULL,
    userid      text,
    name        text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    is_default  boolean NOT NULL DEFAULT false,
    tags        text[] NOT NULL DEFAULT '{}',
    revision    integer NOT NULL DEFAULT 1,
    created     timestamptz NOT NULL DEFAULT now(),
    updated     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_security_groups_project ON cyclades_security_groups (project);
CREATE UNIQUE INDEX cyclades_security_groups_default ON cyclades_security_groups (project)
    WHERE is_default;

CREATE TABLE cyclades_security_group_rules (
    id              text PRIMARY KEY,           -- a UUID
    group_id        text NOT NULL REFERENCES cyclades_security_groups (id) ON DELETE CASCADE,
    project         text NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('ingress', 'egress')),
    ethertype       text NOT NULL CHECK (ethertype IN ('IPv4', 'IPv6')),
    protocol        text,                       -- as given (name or number); NULL: any
    port_range_min  integer,
    port_range_max  integer,
    remote_ip_prefix text,                      -- a CIDR as given (Neutron keeps it)
    remote_group_id text REFERENCES cyclades_security_groups (id) ON DELETE CASCADE,
    description     text NOT NULL DEFAULT '',
    revision        integer NOT NULL DEFAULT 1,
    created         timestamptz NOT NULL DEFAULT now(),
    updated         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_security_group_rules_group ON cyclades_security_group_rules (group_id);
CREATE INDEX cyclades_security_group_rules_remote ON cyclades_security_group_rules
    (remote_group_id) WHERE remote_group_id IS NOT NULL;
CREATE INDEX cyclades_ports_security_groups ON cyclades_ports USING gin (security_groups);
