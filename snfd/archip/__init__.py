"""Thin copy-on-write block volumes served over NBD (Archipelago).
Not built yet."""
