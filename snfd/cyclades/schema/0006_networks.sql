-- The network service (snfd.cyclades.networks): networks, their state on
-- each Ganeti backend, subnets, ports (a server's NICs and free ports) and
-- IP addresses (fixed ones on ports, floating ones held by a user).
--
-- Pools are unique indexes: a MAC prefix (mac_index), a bridge
-- (link_index) or an address is allocated by inserting the lowest free
-- value while the owning row (the pool's network or subnet) is locked; the
-- index is what makes a double allocation impossible.

CREATE TABLE cyclades_networks (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    userid              text,                   -- NULL: an administrator's network
    project             text,
    flavor              text NOT NULL CHECK (flavor IN
                            ('MAC_FILTERED', 'PHYSICAL_VLAN', 'IP_LESS_ROUTED', 'CUSTOM')),
    mode                text NOT NULL CHECK (mode IN ('bridged', 'routed')),
    link                text NOT NULL,
    mac_prefix          text NOT NULL,          -- 'aa:00:0' style, 5 hex digits (+ '0' in Ganeti)
    mac_index           integer,                -- in the MAC-prefix pool; NULL: default
    link_index          integer,                -- in the bridge pool; NULL: fixed link
    public              boolean NOT NULL DEFAULT false,
    shared              boolean NOT NULL DEFAULT false,
    external            boolean NOT NULL DEFAULT false,   -- router:external
    floating_ip_pool    boolean NOT NULL DEFAULT false,
    state               text NOT NULL DEFAULT 'ACTIVE',
    deleted             boolean NOT NULL DEFAULT false,
    tags                text[] NOT NULL DEFAULT '{}',
    revision            integer NOT NULL DEFAULT 1,
    created             timestamptz NOT NULL DEFAULT now(),
    updated             timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX cyclades_networks_mac_index ON cyclades_networks (mac_index)
    WHERE NOT deleted AND mac_index IS NOT NULL;
CREATE UNIQUE INDEX cyclades_networks_link_index ON cyclades_networks (link_index)
    WHERE NOT deleted AND link_index IS NOT NULL;
CREATE INDEX cyclades_networks_owner ON cyclades_networks (userid) WHERE NOT deleted;

-- Where a network exists in Ganeti (snf-net-<id>).  jobs: the add and
-- connect jobs an instance job on that backend must depend on until they
-- are seen to succeed.  operstate: PENDING (jobs submitted), ACTIVE,
-- ERROR, DELETING (remove submitted).
CREATE TABLE cyclades_backend_networks (
    network_id          bigint NOT NULL REFERENCES cyclades_networks (id) ON DELETE CASCADE,
    backend_id          integer NOT NULL REFERENCES cyclades_backends (id) ON DELETE CASCADE,
    operstate           text NOT NULL DEFAULT 'PENDING',
    jobs                bigint[] NOT NULL DEFAULT '{}',
    backendjobid        bigint,
    backendopcode       text NOT NULL DEFAULT '',
    backendjobstatus    text NOT NULL DEFAULT '',
    backendlogmsg       text NOT NULL DEFAULT '',
    backendtime         timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (network_id, backend_id)
);

CREATE TABLE cyclades_subnets (
    id                  bigserial PRIMARY KEY,
    network_id          bigint NOT NULL REFERENCES cyclades_networks (id) ON DELETE CASCADE,
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    userid              text,
    project             text,
    ipversion           smallint NOT NULL CHECK (ipversion IN (4, 6)),
    cidr                cidr NOT NULL,
    gateway             inet,
    dhcp                boolean NOT NULL DEFAULT true,
    dns_nameservers     text[] NOT NULL DEFAULT '{}',
    host_routes         jsonb NOT NULL DEFAULT '[]',
    pools               jsonb NOT NULL DEFAULT '[]',    -- [[first, last], ...]
    tags                text[] NOT NULL DEFAULT '{}',
    revision            integer NOT NULL DEFAULT 1,
    created             timestamptz NOT NULL DEFAULT now(),
    updated             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_subnets_network ON cyclades_subnets (network_id);

-- A port: a server's NIC (device_id; Ganeti NIC name snf-nic-<id>) or a
-- free port.  state: BUILD (the NIC is being added), ACTIVE, DOWN, ERROR.
CREATE TABLE cyclades_ports (
    id                  bigserial PRIMARY KEY,
    network_id          bigint NOT NULL REFERENCES cyclades_networks (id),
    userid              text NOT NULL,
    project             text NOT NULL,
    name                text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    device_id           bigint REFERENCES cyclades_servers (id),
    device_owner        text NOT NULL DEFAULT '',
    mac                 text NOT NULL,
    state               text NOT NULL DEFAULT 'DOWN',
    security_groups     text[] NOT NULL DEFAULT '{}',
    port_security       boolean NOT NULL DEFAULT true,
    admin_state_up      boolean NOT NULL DEFAULT true,
    firewall_profile    text NOT NULL DEFAULT '',
    remove_job          bigint,                 -- the job removing its NIC (DELETING)
    -- a user's port bound to a server: detaching the NIC (Nova's interface
    -- detach, the server's delete) frees it instead of deleting it
    preserve            boolean NOT NULL DEFAULT false,
    tags                text[] NOT NULL DEFAULT '{}',
    revision            integer NOT NULL DEFAULT 1,
    created             timestamptz NOT NULL DEFAULT now(),
    updated             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (network_id, mac)
);
CREATE INDEX cyclades_ports_device ON cyclades_ports (device_id);
CREATE INDEX cyclades_ports_owner ON cyclades_ports (userid);

-- An address of a subnet: fixed on a port, or floating (held by a user,
-- on a port while attached).  The unique index is the IP pool's guarantee.
CREATE TABLE cyclades_ips (
    id                  bigserial PRIMARY KEY,
    subnet_id           bigint NOT NULL REFERENCES cyclades_subnets (id),
    network_id          bigint NOT NULL REFERENCES cyclades_networks (id),
    address             inet NOT NULL,
    port_id             bigint REFERENCES cyclades_ports (id) ON DELETE SET NULL,
    userid              text NOT NULL,
    project             text NOT NULL,
    floating            boolean NOT NULL DEFAULT false,
    -- a floating IP detached from a port whose NIC may still hold it in
    -- Ganeti: attaching it again waits for that port's remove_job
    freed_from          bigint,
    description         text NOT NULL DEFAULT '',
    tags                text[] NOT NULL DEFAULT '{}',
    revision            integer NOT NULL DEFAULT 1,
    created             timestamptz NOT NULL DEFAULT now(),
    updated             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subnet_id, address)
);
CREATE INDEX cyclades_ips_port ON cyclades_ips (port_id);
