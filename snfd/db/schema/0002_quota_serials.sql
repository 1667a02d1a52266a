-- The serials of the quota commissions a charging service (pithos, cyclades)
-- issued, kept by the service itself so that it can resolve them after a
-- crash: a serial the holder still lists as pending is accepted only when
-- its row here says accept (see snfd.quota.serials).
--   pending   true until the service decided (accept or reject)
--   accept    the decision; meaningful once pending is false
--   resolved  the holder was told (or no longer lists the serial)

CREATE TABLE quota_serials (
    component     text NOT NULL,
    serial        bigint NOT NULL,
    resource_key  text NOT NULL DEFAULT '',
    pending       boolean NOT NULL DEFAULT true,
    accept        boolean NOT NULL DEFAULT false,
    resolved      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, serial)
);
CREATE INDEX quota_serials_unresolved ON quota_serials (component, serial)
    WHERE NOT resolved;
CREATE INDEX quota_serials_resource ON quota_serials (component, resource_key)
    WHERE resource_key <> '';
