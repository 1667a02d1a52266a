"""A simulated Ganeti 3.0 cluster: RAPI v2 over HTTPS and a job queue on
disk that behave, seen from outside, like a real cluster's.

``SimulatedCluster`` is the entry point; see ``snfd.ganeti_sim.cluster``.
"""

from snfd.ganeti_sim.cluster import SimulatedCluster

__all__ = ["SimulatedCluster"]
