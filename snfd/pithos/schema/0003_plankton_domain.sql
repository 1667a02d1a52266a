-- Attributes of domains other than 'pithos' (images keep theirs in
-- 'plankton', as Synnefo does) belong to the object: every new version
-- copies them from the version it replaces (snfd.pithos.backend).  Image
-- metadata stored before as 'plankton:*' keys of the 'pithos' domain moves
-- to the 'plankton' domain, keys unchanged.
UPDATE pithos_attributes SET domain = 'plankton'
WHERE domain = 'pithos' AND starts_with(key, 'plankton:');

-- The object store finds objects by the presence of a key in a domain
-- (the image list); the 'pithos' domain is never searched that way.
CREATE INDEX pithos_attributes_domain_key ON pithos_attributes (domain, key, serial)
WHERE domain <> 'pithos';
