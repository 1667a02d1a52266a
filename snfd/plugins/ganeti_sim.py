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

# The simulator's hypervisors (``snfd.ganeti_sim.model.HYPERVISORS``), named
# here so that loading the plugin does not import the simulator.
_HYPERVISORS = ("fake", "kvm")


def hypervisor(value: str) -> str:
    """``fake`` or ``kvm``."""
    name = value.strip().lower()
    if name not in _HYPERVISORS:
        raise ValueError(f"expected one of {', '.join(_HYPERVISORS)}, got {value.strip()!r}")
    return name


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
        Key("hypervisor", hypervisor, "fake",
            "The cluster's hypervisor: fake (Ganeti's test hypervisor, no hotplug) or"
            " kvm (as a production cluster: disks and NICs of running servers are"
            " hot-plugged)."),
        Key("register", boolean, True,
            "Register (and keep up to date) the cluster as a compute backend."),
        Key("demo", boolean, True,
            "On a cluster with no flavors, create a few, and a small public system"
            " image, so that a new user can create a server at once."),
    )


plugin = GanetiSimPlugin()
