-- Expiring objects (Swift's X-Delete-At, snfd.pithos.expiry): the leader's
-- sweep finds the versions whose time has come without scanning every
-- attribute.  The value is ten digits of epoch seconds, so text order is
-- time order.
CREATE INDEX pithos_attributes_delete_at
    ON pithos_attributes ((value COLLATE "C"), serial)
    WHERE domain = 'pithos' AND key = 'X-Delete-At';
