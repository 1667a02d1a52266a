-- Blocks uploaded by POST to a container (the block upload of the hashmap
-- protocol), per uploading account: a hashmap PUT may name only blocks its
-- caller uploaded (these rows) or can read in an object, so that neither
-- a 409 nor a 201 tells anything about another tenant's blocks.  A row
-- goes when a version of the account references the block or when the
-- garbage collector runs past it (snfd.pithos.gc).
CREATE TABLE pithos_uploads (
    account     text NOT NULL,
    hash        bytea NOT NULL,
    size        bigint NOT NULL CHECK (size >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, hash)
);
CREATE INDEX pithos_uploads_hash ON pithos_uploads (hash);
