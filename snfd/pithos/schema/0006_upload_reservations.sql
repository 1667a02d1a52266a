-- Room taken, at the gate of a block upload, from what the uploader may
-- hold in unreferenced uploads (pithos_uploads): checking the bound and
-- taking the room is one transaction, so concurrent uploads cannot pass
-- the bound together.  A reservation goes when its upload's blocks are
-- recorded or the upload fails, or when the garbage collector runs past
-- it (a node that stopped mid-upload).
CREATE TABLE pithos_upload_reservations (
    id          bigserial PRIMARY KEY,
    account     text NOT NULL,
    size        bigint NOT NULL CHECK (size >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pithos_upload_reservations_account ON pithos_upload_reservations (account);
