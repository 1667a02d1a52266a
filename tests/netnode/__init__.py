"""Tests of the node-side NIC scripts (``snfd.netnode``)."""
