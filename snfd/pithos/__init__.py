"""Object storage (Pithos / Swift): content-addressed blocks, hashmaps,
versions, sharing.  Not built yet."""
