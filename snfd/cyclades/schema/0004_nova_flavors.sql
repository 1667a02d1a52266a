-- Flavors as Nova's administrators make them (POST /compute/v2.1/flavors):
-- named, with an id of their choosing (flavorid: the id Nova's dialect
-- shows and takes; Synnefo's dialect keeps the serial id), swap, ephemeral
-- disk, rxtx factor, a description and free-form extra specs.  Synnefo's
-- own flavors (snf-manage flavor-create, the update path) stay unnamed and
-- unique by shape; named ones may share a shape.  Names and flavorids are
-- unique among flavors not deleted (a deleted flavor stays for the
-- servers that use it).
ALTER TABLE cyclades_flavors DROP CONSTRAINT cyclades_flavors_cpu_ram_disk_disk_template_key;
ALTER TABLE cyclades_flavors
    ADD COLUMN name        text,
    ADD COLUMN flavorid    text,
    ADD COLUMN swap        integer NOT NULL DEFAULT 0 CHECK (swap >= 0),          -- MiB
    ADD COLUMN ephemeral   integer NOT NULL DEFAULT 0 CHECK (ephemeral >= 0),     -- GiB
    ADD COLUMN rxtx_factor double precision NOT NULL DEFAULT 1.0 CHECK (rxtx_factor > 0),
    ADD COLUMN description text,
    ADD COLUMN extra_specs jsonb NOT NULL DEFAULT '{}';
UPDATE cyclades_flavors SET flavorid = id::text;
CREATE UNIQUE INDEX cyclades_flavors_shape
    ON cyclades_flavors (cpu, ram, disk, disk_template) WHERE name IS NULL;
CREATE UNIQUE INDEX cyclades_flavors_name ON cyclades_flavors (name)
    WHERE name IS NOT NULL AND NOT deleted;
CREATE UNIQUE INDEX cyclades_flavors_flavorid ON cyclades_flavors (flavorid) WHERE NOT deleted;
