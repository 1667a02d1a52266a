-- Nova's keypair types (compute microversion 2.2): an OpenSSH public key
-- ("ssh") or an X.509 certificate in PEM ("x509", for WinRM).
ALTER TABLE cyclades_keypairs
    ADD COLUMN type text NOT NULL DEFAULT 'ssh' CHECK (type IN ('ssh', 'x509'));
