-- A server's free-text description (Nova's, from compute microversion
-- 2.19): set on create, rebuild and update; NULL when none was given.
ALTER TABLE cyclades_servers ADD COLUMN description text;

-- The keys a build's OS definition (snf-image) reports its progress and
-- diagnostics with (POST /vmapi/server-progress/<key>): one per create or
-- rebuild, valid while the server is not deleted, for a bounded number of
-- reports.
CREATE TABLE cyclades_progress_keys (
    key text PRIMARY KEY,
    server_id bigint NOT NULL REFERENCES cyclades_servers (id) ON DELETE CASCADE,
    reports integer NOT NULL DEFAULT 0,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cyclades_progress_keys_server ON cyclades_progress_keys (server_id);
