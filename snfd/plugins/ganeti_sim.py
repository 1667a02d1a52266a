"""A simulated Ganeti cluster as a node plugin: the embedded default's
compute backend, so that ``./dev run`` gives servers that go BUILD ->
ACTIVE.  See ``snfd.ganeti_sim``; it registers the cluster with the
compute service (``IComputeBackends``) when that runs on the node."""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from snfd.config import Key, boolean, integer, number, positive_integer, text
from snfd.interfaces import IComputeBackends, ISnfdPlugin
from snfd.plugins import ServicePlugin


@implementer(IPlugin, ISnfdPlugin)
class GanetiSimPlugin(ServicePlugin):
    name = "ganeti-sim"
    factory = "snfd.ganeti_sim.service:from_config"
    uses = (IComputeBackends,)
    config_keys = (
        Key("cluster", text, "sim.ganeti.test", "Name of the simulated cluster."),
        Key("port", integer, 0,
            "Port of its RAPI on 127.0.0.1 (HTTPS); 0 picks a free one at each start."),
        Key("nodes", positive_integer, 1, "Nodes of the simulated cluster."),
        Key("node_memory", positive_integer, 32768, "Memory of each node, MiB."),
        Key("node_cpus", positive_integer, 16, "Processors of each node."),
        Key("queue_delay", number, 0.1, "Seconds a job waits queued before it runs."),
        Key("exec_time", number, 0.5, "Seconds a job's opcode runs."),
        Key("register", boolean, True,
            "Register (and keep up to date) the cluster as a compute backend."),
        Key("demo", boolean, True,
            "On a cluster with no flavors, create a few, and a small public system"
            " image, so that a new user can create a server at once."),
    )


plugin = GanetiSimPlugin()
