"""The agent's own metrics and its /metrics endpoint."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .datapath import DatapathCollector

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_runs = Counter("dfxdp_reconcile_runs", "Reconcile passes", registry=r)
        self.reconcile_errors = Counter("dfxdp_reconcile_errors", "Reconcile passes that failed", registry=r)
        self.reconcile_seconds = Histogram("dfxdp_reconcile_duration_seconds", "Time of one reconcile pass",
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.convergence_seconds = Histogram("dfxdp_convergence_seconds", "From an NB event reaching the agent to "
                                             "the datapath programmed", buckets=LATENCY_BUCKETS, registry=r)
        self.watch_lag = Gauge("dfxdp_nb_watch_lag_revisions", "NB store revision minus the revision the agent "
                               "applied", registry=r)
        self.heartbeat = Gauge("dfxdp_heartbeat_timestamp_seconds", "Last successful chassis heartbeat", registry=r)
        self.cache_objects = Gauge("dfxdp_cache_objects", "NB objects in the selective cache", registry=r)
        self.bound_ports = Gauge("dfxdp_bound_ports", "Ports bound on this chassis", registry=r)
        self.punt_records = Counter("dfxdp_punt_records", "Punted frames the agent read, by outcome",
                                    ["outcome"], registry=r)
        self.dhcp_messages = Counter("dfxdp_dhcp_messages", "DHCP client frames the DHCP app read: its answers "
                                     "(offer, ack, nak) and the rest by why", ["outcome"], registry=r)

    def serve_datapath(self, maps) -> None:
        self.registry.register(DatapathCollector(maps))

    def start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
