"""Tests of Archipelago: volume maps, thin copy-on-write volumes, NBD."""
