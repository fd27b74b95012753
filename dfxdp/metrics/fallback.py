"""Metrics of the OVS fallback (docs/fallback.md)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class FallbackMetrics:
    def __init__(self, registry: CollectorRegistry):
        r = registry
        self.flows = Gauge("dfxdp_fallback_flows", "OpenFlow flows the agent holds in a bridge table",
                           ["bridge", "table"], registry=r)
        self.datapath = Gauge("dfxdp_fallback_datapath", "OVS datapath of br-int (1 for the one in use): system "
                              "(kernel module) or netdev (userspace)", ["type"], registry=r)
        self.connected = Gauge("dfxdp_fallback_controller_connected", "1 while the bridge is connected to the "
                               "agent's OpenFlow controller", ["bridge"], registry=r)
        self.ovsdb_up = Gauge("dfxdp_fallback_ovsdb_reachable", "1 when the agent reached OVSDB on its last pass",
                              registry=r)
        self.igmp_groups = Gauge("dfxdp_fallback_igmp_groups", "IPv4 multicast groups with a member on this "
                                 "chassis (IGMP snooping)", ["network"], registry=r)
        self.snat_sessions = Gauge("dfxdp_fallback_snat_sessions", "Connections OVS tracks for a router this "
                                   "chassis does default SNAT for (its conntrack zone)", ["router"], registry=r)
        self.packet_ins = Counter("dfxdp_fallback_packet_ins", "Frames br-int's flows sent to the agent, by "
                                  "outcome: handled, or rate_limited (over the port's packet-in limit)",
                                  ["outcome"], registry=r)
        self.errors = Counter("dfxdp_fallback_sync_errors", "Fallback passes that failed (OVSDB, ovs-vswitchd "
                              "or a refused flow)", registry=r)

    def observe_snat(self, sessions_by_router: dict[str, int]) -> None:
        """Set every router's count, then drop the series of routers SNATed elsewhere now (never
        cleared first: a scrape in between would find none)."""
        for router, count in sessions_by_router.items():
            self.snat_sessions.labels(router).set(count)
        for labels in list(self.snat_sessions._metrics):  # prometheus_client keeps the label tuples there
            if labels[0] not in sessions_by_router:
                self.snat_sessions.remove(*labels)

    def observe_igmp(self, groups_by_network: dict[str, list[str]]) -> None:
        self.igmp_groups.clear()  # a network without members any more has no series
        for network, groups in groups_by_network.items():
            self.igmp_groups.labels(network).set(len(groups))
