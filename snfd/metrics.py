"""Prometheus metrics of one node.

Each node owns its own ``CollectorRegistry`` (never the global one), so
several nodes can live in one process (tests) and ``GET /metrics`` shows
exactly this node.  Modules receive the ``Metrics`` object and update the
instruments named here; nothing else defines metrics.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
)


class Metrics:
    """The instruments of one node, registered in a private registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "snfd_http_requests", "HTTP requests answered",
            ["route", "method", "status"], registry=r)
        self.http_latency = Histogram(
            "snfd_http_request_seconds", "Time from request to last byte",
            ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.db_interactions = Histogram(
            "snfd_db_interaction_seconds",
            "Duration of named database interactions (all attempts)",
            ["name", "outcome"], buckets=_LATENCY_BUCKETS, registry=r)
        self.db_retries = Counter(
            "snfd_db_retries", "Database interactions run again",
            ["name", "reason"], registry=r)
        self.bus_published = Counter(
            "snfd_bus_published", "Messages confirmed by the bus",
            ["exchange"], registry=r)
        self.bus_publish_failures = Counter(
            "snfd_bus_publish_failures", "Publishes that gave up",
            ["exchange"], registry=r)
        self.bus_consumed = Counter(
            "snfd_bus_consumed", "Messages handled by consumers",
            ["queue", "outcome"], registry=r)
        self.bus_connected = Gauge(
            "snfd_bus_connected", "1 while the bus is connected",
            registry=r)
        self.bus_reconnects = Counter(
            "snfd_bus_reconnects", "Bus connections (re)established",
            registry=r)
        self.leader = Gauge(
            "snfd_cluster_leader", "1 while this node is the leader",
            registry=r)
        self.leader_epoch = Gauge(
            "snfd_cluster_epoch", "Epoch of this node's current leadership"
            " term (0 when not leader)", registry=r)
        self.leader_changes = Counter(
            "snfd_cluster_leadership_changes",
            "Leadership terms gained or lost by this node",
            ["change"], registry=r)
        self.outbound_requests = Counter(
            "snfd_outbound_requests", "Outbound HTTP calls",
            ["target", "outcome"], registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition of every instrument."""
        return generate_latest(self.registry)
