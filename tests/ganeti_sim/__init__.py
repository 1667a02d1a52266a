"""Tests of the simulated Ganeti cluster (``snfd.ganeti_sim``)."""
