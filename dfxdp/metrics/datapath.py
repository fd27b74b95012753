"""A custom collector: every scrape sums the per-CPU counters of the pinned maps."""
from __future__ import annotations

from typing import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dfxdp.datapath import fastpath
from dfxdp.datapath.libbpf import BPF_MAP_TYPE_RINGBUF, Map, ffi, lib, to_dict
from dfxdp.datapath.pipeline import counters_from

DIRECTIONS = {lib.SG_INGRESS: "ingress", lib.SG_EGRESS: "egress"}
DNS_OUTCOMES = {value: name for value, name in ffi.typeof("enum dns_stat").elements.items() if name != "DNS_STAT_MAX"}


class DatapathCollector(Collector):
    def __init__(self, maps: Callable[[], Mapping[str, Map]]):
        self._maps = maps  # a callable: the agent may reload its pipeline

    def collect(self) -> Iterator:
        maps = self._maps()
        if not maps:
            return
        counters = counters_from(maps)
        for table, label, metric in (("stages", "stage", "dfxdp_stage"), ("verdicts", "verdict", "dfxdp_verdict"),
                                     ("drops", "reason", "dfxdp_drop")):
            packets = CounterMetricFamily(f"{metric}_packets", f"Packets by {label}", labels=[label])
            octets = CounterMetricFamily(f"{metric}_bytes", f"Bytes by {label}", labels=[label])
            for name, value in counters[table].items():
                packets.add_metric([name], value["packets"])
                octets.add_metric([name], value["bytes"])
            yield packets
            yield octets
        if "sg_stats" in maps:
            port_packets = CounterMetricFamily("dfxdp_port_packets", "Packets per port, direction and security "
                                               "group verdict", labels=["port_key", "direction", "verdict"])
            port_bytes = CounterMetricFamily("dfxdp_port_bytes", "Bytes per port, direction and security group "
                                             "verdict", labels=["port_key", "direction", "verdict"])
            for key, values in maps["sg_stats"].items():
                k = to_dict(key)
                total: dict[str, int] = {}
                for v in values:
                    for field, n in to_dict(v).items():
                        total[field] = total.get(field, 0) + n
                labels = [str(k["port_key"]), DIRECTIONS.get(k["direction"], str(k["direction"]))]
                for verdict in ("allowed", "denied"):
                    port_packets.add_metric(labels + [verdict], total[f"{verdict}_packets"])
                    port_bytes.add_metric(labels + [verdict], total[f"{verdict}_bytes"])
            yield port_packets
            yield port_bytes
        if fastpath.STATS_MAP in maps:
            fast = CounterMetricFamily("dfxdp_fast_path_packets", "Frames by what the established-flow fast path "
                                       "did (enum fast_stat: forwarded from the cache, or why the stages decided)",
                                       labels=["outcome"])
            for name, value in fastpath.stats(maps).items():
                fast.add_metric([name], value["packets"])
            yield fast
        if "dns_stats" in maps:
            dns = CounterMetricFamily("dfxdp_dns_queries", "Queries to a DNS server address by outcome "
                                      "(enum dns_stat: answered in XDP, punted and why)", labels=["outcome"])
            for value, name in sorted(DNS_OUTCOMES.items()):
                dns.add_metric([name], maps["dns_stats"].lookup_sum(value).get("packets", 0))
            yield dns
        entries = GaugeMetricFamily("dfxdp_map_entries", "Entries in each BPF map", labels=["map"])
        capacity = GaugeMetricFamily("dfxdp_map_capacity", "max_entries of each BPF map", labels=["map"])
        for name, m in sorted(maps.items()):
            if m.info.type == BPF_MAP_TYPE_RINGBUF:
                continue  # a stream of records (the punt ring), not entries
            if m.info.type in (2, 3, 6):  # arrays are always full: report capacity only
                entries.add_metric([name], m.info.max_entries)
            else:
                entries.add_metric([name], len(m))
            capacity.add_metric([name], m.info.max_entries)
        yield entries
        yield capacity
        if "conntrack" in maps:
            yield GaugeMetricFamily("dfxdp_conntrack_entries", "Tracked flows", value=len(maps["conntrack"]))
