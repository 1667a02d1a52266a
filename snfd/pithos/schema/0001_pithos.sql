-- The storage service's metadata (Pithos): a tree of paths, the versions
-- of objects with their hashmaps, metadata, statistics, policies, sharing,
-- groups and public links.  Names compare byte-wise (COLLATE "C": UTF-8
-- byte order is code point order), never by locale.

-- Paths: an account is "<account>", a container "<account>/<container>",
-- an object "<account>/<container>/<name>" (flat under its container; the
-- "/" in names are only prefixes).  Accounts are created on first write.
CREATE TABLE pithos_nodes (
    node            bigserial PRIMARY KEY,
    parent          bigint REFERENCES pithos_nodes (node),
    path            text COLLATE "C" NOT NULL UNIQUE,
    -- the newest version of an object node (any cluster); NULL otherwise
    latest_version  bigint
);
CREATE INDEX pithos_nodes_children ON pithos_nodes (parent, path);

-- One row per content version's hashmap: the concatenated 32-byte block
-- digests.  Metadata-only versions and copies share their source's map.
CREATE TABLE pithos_maps (
    map_id  bigserial PRIMARY KEY,
    hashes  bytea NOT NULL
);

-- Which maps name which blocks: what the garbage collector asks about a
-- page of block names without scanning the maps.
CREATE TABLE pithos_map_blocks (
    hash    bytea NOT NULL,
    map_id  bigint NOT NULL REFERENCES pithos_maps (map_id) ON DELETE CASCADE,
    PRIMARY KEY (hash, map_id)
);
CREATE INDEX pithos_map_blocks_map ON pithos_map_blocks (map_id);

-- Blocks a garbage collection is deleting right now: a version created
-- meanwhile must not reference them (see snfd.pithos.backend).
CREATE TABLE pithos_gc_pending (
    hash        bytea PRIMARY KEY,
    marked_at   timestamptz NOT NULL DEFAULT now()
);

-- Versions of objects.  cluster: 0 normal (current), 1 history
-- (superseded), 2 deleted (deletion markers).  serial is the public id.
CREATE TABLE pithos_versions (
    serial    bigserial PRIMARY KEY,
    node      bigint NOT NULL REFERENCES pithos_nodes (node),
    hash      text NOT NULL,
    size      bigint NOT NULL CHECK (size >= 0),
    type      text NOT NULL,
    source    bigint,
    mtime     double precision NOT NULL,
    muser     text NOT NULL,
    uuid      text NOT NULL,
    checksum  text NOT NULL DEFAULT '',
    cluster   smallint NOT NULL CHECK (cluster IN (0, 1, 2)),
    map_id    bigint REFERENCES pithos_maps (map_id)
);
CREATE INDEX pithos_versions_node ON pithos_versions (node, serial);
CREATE INDEX pithos_versions_map ON pithos_versions (map_id);

-- Metadata of a version, by domain ('pithos': user meta and the stored
-- content headers, under their header names).
CREATE TABLE pithos_attributes (
    serial  bigint NOT NULL REFERENCES pithos_versions (serial) ON DELETE CASCADE,
    domain  text NOT NULL,
    key     text NOT NULL,
    value   text NOT NULL,
    PRIMARY KEY (serial, domain, key)
);

-- Metadata of accounts and containers (not versioned).
CREATE TABLE pithos_node_meta (
    node   bigint NOT NULL REFERENCES pithos_nodes (node) ON DELETE CASCADE,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (node, key)
);

-- Per container and cluster: how many versions, their bytes, and the last
-- change.  An account's own row (cluster 0) holds only the time of its own
-- changes; its totals are the sums over its containers.
CREATE TABLE pithos_statistics (
    node        bigint NOT NULL REFERENCES pithos_nodes (node) ON DELETE CASCADE,
    cluster     smallint NOT NULL,
    population  bigint NOT NULL DEFAULT 0,
    size        bigint NOT NULL DEFAULT 0,
    mtime       double precision NOT NULL,
    PRIMARY KEY (node, cluster)
);

-- Container policies: quota, versioning, project.
CREATE TABLE pithos_policy (
    node   bigint NOT NULL REFERENCES pithos_nodes (node) ON DELETE CASCADE,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (node, key)
);

-- How many latest objects of a container use each user meta key
-- (X-Container-Object-Meta without a scan).
CREATE TABLE pithos_meta_keys (
    container  bigint NOT NULL REFERENCES pithos_nodes (node) ON DELETE CASCADE,
    key        text NOT NULL,
    refs       bigint NOT NULL CHECK (refs > 0),
    PRIMARY KEY (container, key)
);

-- Sharing: access 0 read, 1 write; member a user uuid, "<owner>:<group>"
-- or "*".  Paths of objects, containers (Swift ACLs) and accounts.
CREATE TABLE pithos_permissions (
    path    text COLLATE "C" NOT NULL,
    access  smallint NOT NULL CHECK (access IN (0, 1)),
    member  text NOT NULL,
    PRIMARY KEY (path, access, member)
);
CREATE INDEX pithos_permissions_member ON pithos_permissions (member);

CREATE TABLE pithos_groups (
    owner   text NOT NULL,
    name    text NOT NULL,
    member  text NOT NULL,
    PRIMARY KEY (owner, name, member)
);
CREATE INDEX pithos_groups_member ON pithos_groups (member);

-- Public links: /public/<token> serves the latest version of path.
CREATE TABLE pithos_public (
    token   text PRIMARY KEY,
    path    text COLLATE "C" NOT NULL UNIQUE,
    active  boolean NOT NULL DEFAULT true
);
