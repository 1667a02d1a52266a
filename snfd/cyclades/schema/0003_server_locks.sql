-- Nova's server lock: who locked a server ('' unlocked, 'owner' or 'admin').
-- A locked server changes only by an administrator's request.
ALTER TABLE cyclades_servers ADD COLUMN locked_by text NOT NULL DEFAULT ''
    CHECK (locked_by IN ('', 'owner', 'admin'));
